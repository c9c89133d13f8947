"""Shared pieces of the benchmark harness: the models, their data, and small helpers.

Nothing here imports JAX, so the orchestrator (bench/run.py) stays light; the workers
(bench/worker.py) import the systems they measure.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
MODELS_DIR = BENCH_DIR / "models"
RESULTS_DIR = BENCH_DIR / "results"


def data_dir() -> Path:
    """The shared benchmark data sets: $PPL_BENCH_DATA, else ../shared/bench beside the repo."""
    env = os.environ.get("PPL_BENCH_DATA")
    if env:
        return Path(env)
    for cand in (REPO_ROOT.parent / "shared" / "bench", REPO_ROOT / "shared" / "bench"):
        if cand.is_dir():
            return cand
    return REPO_ROOT.parent / "shared" / "bench"


POSTERIORDB_MODELS = REPO_ROOT / "tests" / "posteriordb" / "models"


def posteriordb_models() -> tuple[Path, list]:
    """The conformance suite's posteriordb models (tests/posteriordb/models/NAME.gm) whose
    reference folder exists, and the folder holding those (../shared/posteriordb)."""
    shared = data_dir().parent / "posteriordb"
    return shared, sorted(p.stem for p in POSTERIORDB_MODELS.glob("*.gm") if (shared / p.stem).is_dir())


# name -> GM file, data set, the sampled parameters (every scalar of each enters min ESS / max R-hat)
MODELS = {
    "eight_schools": {"gm": "eight_schools.gm", "stan": "eight_schools.stan", "data": "eight_schools",
                      "params": ["mu", "tau", "theta_raw"]},
    "logistic": {"gm": "logistic.gm", "stan": "logistic.stan", "data": "logistic",
                 "params": ["alpha", "beta"]},
    "hier_linear": {"gm": "hier_linear.gm", "stan": "hier_linear.stan", "data": "hier_linear",
                    "params": ["mu_a", "mu_b", "tau_a", "tau_b", "sigma", "z_a", "z_b"]},
    "mixture_separated": {"gm": "mixture.gm", "stan": "mixture.stan", "data": "mixture_separated",
                          "params": ["w", "mu", "sigma"]},
    "mixture_hard": {"gm": "mixture.gm", "stan": "mixture.stan", "data": "mixture_hard",
                     "params": ["w", "mu", "sigma"]},
}
DEFAULT_MODELS = list(MODELS)


def load_data(spec: dict) -> dict:
    """The data of a run as numpy arrays.

    ``spec`` is ``{"set": NAME}`` (a shared data set) or ``{"synthetic_logistic": N, "D": 20,
    "seed": 0}`` (the scaling series).
    """
    if "synthetic_logistic" in spec:
        return synthetic_logistic(int(spec["synthetic_logistic"]), int(spec.get("D", 20)),
                                  int(spec.get("seed", 0)))
    with open(data_dir() / f"{spec['set']}.json", encoding="utf-8") as fh:
        raw = json.load(fh)
    out = {}
    for k, v in raw.items():
        a = np.asarray(v)
        if a.dtype.kind in "iub":
            a = a.astype(np.int64)
        elif a.dtype.kind == "f":
            a = a.astype(np.float64)
        out[k] = a if a.ndim else (int(a) if a.dtype.kind in "iu" else float(a))
    return out


def synthetic_logistic(n: int, d: int = 20, seed: int = 0) -> dict:
    """Logistic-regression data with a fixed seed: X ~ N(0, 1), beta ~ N(0, 0.5), alpha = 0.3."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    beta = rng.normal(0.0, 0.5, d)
    eta = 0.3 + x @ beta
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return {"N": n, "D": d, "X": x, "y": y}


def scalar_columns(draws: dict, params: list) -> dict:
    """(chains, draws) arrays of every scalar of ``params``: 'beta[3]' -> array."""
    cols = {}
    for name in params:
        a = np.asarray(draws[name], dtype=np.float64)
        c, n = a.shape[:2]
        flat = a.reshape(c, n, -1)
        if a.ndim == 2:
            cols[name] = flat[:, :, 0]
        else:
            shape = a.shape[2:]
            for j, idx in enumerate(np.ndindex(*shape)):
                cols[f"{name}[{','.join(map(str, idx))}]"] = flat[:, :, j]
    return cols


def min_bulk_ess(draws: dict, params: list) -> float:
    """The smallest bulk ESS over every (non-constant) scalar of ``params``."""
    from ppl.diagnostics import ess_bulk

    ess = [float(ess_bulk(x)) for x in scalar_columns(draws, params).values() if np.ptp(x) > 0]
    return min(ess) if ess else float("nan")


def median(values):
    vals = [v for v in values if isinstance(v, (int, float)) and v == v]
    if not vals:
        return None
    return float(np.median(vals))


# configuration name -> (worker spec fields, label)
CONFIGS = {
    "ppl": ({"system": "ppl"}, "ppl (default: a chain per host device)"),
    "ppl-vec": ({"system": "ppl"}, "ppl, chains vmapped on one device (PPL_HOST_DEVICES=1)"),
    "ppl-fisher": ({"system": "ppl", "mass_matrix": "fisher"}, "ppl, mass_matrix=\"fisher\" (nutpie's diagonal)"),
    "ppl-lowrank": ({"system": "ppl", "mass_matrix": "lowrank"}, "ppl, mass_matrix=\"lowrank\" (nutpie's low-rank)"),
    # ppl without the sufficient-statistics rewrite of Gaussian linear likelihoods (ppl.suffstats)
    "ppl-rows": ({"system": "ppl"}, "ppl, Gaussian likelihoods row by row (PPL_SUFFSTATS=0)"),
    "numpyro-vec": ({"system": "numpyro", "chain_method": "vectorized"}, "NumPyro vectorized"),
    "numpyro-seq": ({"system": "numpyro", "chain_method": "sequential"}, "NumPyro sequential"),
    "numpyro-par": ({"system": "numpyro", "chain_method": "parallel"}, "NumPyro parallel"),
    "blackjax": ({"system": "blackjax"}, "hand-written JAX + BlackJAX"),
    # The peers again with the XLA setting ppl makes at import (ppl.inference.parallel.SMALL_LOOP_BYTES):
    # how much of ppl's lead on small models is that one flag, which any JAX user could set.
    "numpyro-par-xla": ({"system": "numpyro", "chain_method": "parallel"}, "NumPyro parallel + ppl's XLA loop setting"),
    "blackjax-xla": ({"system": "blackjax"}, "hand-written JAX + BlackJAX + ppl's XLA loop setting"),
    "stan": ({"system": "stan"}, "PyStan"),
}
DEFAULT_CONFIGS = [c for c in CONFIGS if not c.endswith("-xla") and c != "ppl-rows"]
LOGP_CONFIGS = {"ppl", "ppl-rows", "numpyro-vec", "blackjax"}  # the log density is the same for every NumPyro method
SCALING_CONFIGS = ["ppl", "numpyro-vec", "blackjax"]
