"""Conformance: each GM translation in models/ reproduces posteriordb's reference posterior.

Every parameter in reference.json is compared: mean within 4 * sqrt(mcse_ours^2 + mcse_ref^2)
(plus a small floor), and sd within its Monte Carlo standard error. A quick subset runs by
default; `pytest -m slow tests/posteriordb` runs them all. Each model runs with Stan's mass-matrix
adaptation (the default), with the gradient-informed diagonal ("fisher") and with nutpie's
low-rank metric ("lowrank")."""
import json
import os
import re

import numpy as np
import pytest

import ppl
from conftest import SHARED
from mcse import assert_mean, assert_sd

HERE = os.path.dirname(__file__)
MODELS = sorted(f[:-3] for f in os.listdir(os.path.join(HERE, "models")) if f.endswith(".gm"))
# in the default run; the second has a Gaussian likelihood that ppl.suffstats rewrites
QUICK = {"eight_schools-eight_schools_noncentered", "kidiq-kidscore_interaction"}


def _column(post, ref_name):
    """`theta[1]` (Stan, 1-based) -> our draws of theta[0], as (chains, draws)."""
    m = re.fullmatch(r"(\w+)(?:\[([\d,]+)\])?", ref_name)
    name, idx = m.group(1), m.group(2)
    x = post[name]
    if idx:
        x = x[(slice(None), slice(None)) + tuple(int(i) - 1 for i in idx.split(","))]
    return np.asarray(x, dtype=float)


# Models whose posterior diverges at the default target acceptance under every metric, run as ppl's
# divergence warning advises. gp_pois_regr at 0.8 (seeds 1-8): 0-163 divergences a chain with every
# metric (diag, fisher, dense, lowrank), and the low-rank and dense metrics' larger steps leave the GP
# amplitude's upper tail under-explored (alpha's sd 0.68-0.80 with lowrank, mean 0.73, against the
# reference's 0.79; diag 0.77-0.87). At 0.95 (seeds 1-8 lowrank, 1-3 diag and fisher): 0-4
# divergences a chain (0.9 left up to 21), alpha's sd 0.74-0.80 with lowrank, 0.76-0.79 else.
# mcycle_gp (whose reference Stan ran at adapt_delta 0.999, max tree depth 15) at 0.8: 33-39
# divergences (seeds 1, 4, 6) and the GP amplitude's heavy upper tail short: sdgp_1's sd 10.2-11.1
# against 11.24 over seeds 1-6, 4.3, 3.3, 4.0 standard errors off on seeds 1, 4, 6 (seed 1 passed
# at 2.6 until a last-bit change of the starting gradient, 384cf61). At 0.99 no divergences and
# every parameter within 3.6 standard errors on those seeds (diag), within 2.5 (fisher) and 3.4
# (lowrank) on seed 1.
TARGET_ACCEPT = {"gp_pois_regr-gp_pois_regr": 0.95, "mcycle_gp-accel_gp": 0.99}


def _params(name, mass):
    marks = [] if name in QUICK else [pytest.mark.slow]
    return pytest.param(name, mass, marks=marks, id=name if mass == "diag" else f"{name}-{mass}")


@pytest.mark.parametrize("name,mass", [_params(n, m) for m in ("diag", "fisher", "lowrank") for n in MODELS])
@pytest.mark.filterwarnings("ignore:data `.*` matches nothing in the model")   # posteriordb's extra fields
def test_reference_posterior(name, mass):
    folder = os.path.join(SHARED, "posteriordb", name)
    if not os.path.isdir(folder):
        pytest.skip(f"shared/posteriordb/{name} not available")
    with open(os.path.join(folder, "reference.json")) as fh:
        ref = json.load(fh)
    model = ppl.load(os.path.join(HERE, "models", name + ".gm"))
    data = ppl.load_data(os.path.join(folder, "data.json"))
    post = model.sample(data, chains=4, warmup=1000, draws=1000, seed=1, mass_matrix=mass,
                        target_accept=TARGET_ACCEPT.get(name))
    ess_ref = ref["num_draws"]
    for pname, r in ref["parameters"].items():
        x = _column(post, pname)
        ref_sd_se = r["sd"] / np.sqrt(2 * max((r["sd"] / r["mcse_mean"]) ** 2, 1)) if r["mcse_mean"] else \
            r["sd"] / np.sqrt(2 * ess_ref)
        assert_mean(x, r["mean"], r["mcse_mean"], name=pname, floor=1e-3 * r["sd"])
        assert_sd(x, r["sd"], ref_sd_se, name=pname, floor=1e-3 * r["sd"])
