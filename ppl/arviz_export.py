"""Results as ArviZ ``InferenceData``, and NetCDF files (``.nc``) through it.

Groups: ``posterior`` (latent and deterministic nodes), ``posterior_predictive``
(generated nodes: drawn from each posterior draw), ``sample_stats`` (ArviZ's names:
lp, acceptance_rate, step_size, tree_depth, n_steps, diverging, energy),
``observed_data`` and ``constant_data`` (the data the model was fitted to), and, given a
prior result, ``prior`` and ``prior_predictive`` (its draws of the observed nodes).
Dimension names come from the declared types (``theta: real[J]`` gives ``J``); axes
without a name get ArviZ's default ``theta_dim_1``.

ppl's own bookkeeping (kind, completed, timings, meta, variable order) travels in the
main group's attributes as JSON text, so ``load(save(post))`` gives back the same result.
ArviZ is imported only when one of these functions is called.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings

import numpy as np

from .results_io import INT_STATS, json_default, restore_meta, temp_path

__all__ = ["ARVIZ_STATS", "to_inference_data", "write_netcdf", "read_netcdf", "data_groups"]

ARVIZ_STATS = {"lp__": "lp", "accept_stat__": "acceptance_rate", "stepsize__": "step_size",
               "treedepth__": "tree_depth", "n_leapfrog__": "n_steps", "divergent__": "diverging",
               "energy__": "energy"}
_FROM_ARVIZ = {v: k for k, v in ARVIZ_STATS.items()}
_ATTR = "ppl"   # attribute of the main group holding ppl's bookkeeping (JSON)


def _arviz():
    try:
        import arviz
    except ImportError:
        raise ImportError("this needs ArviZ, which is not installed: "
                          "pip install 'ppl[arviz]' (or pip install arviz)") from None
    return arviz


# --------------------------------------------------------------------------- from a binding
def data_groups(binding) -> tuple[dict, dict, dict]:
    """``(observed, constant_data, dims)`` of a :class:`ppl.binding.Binding`.

    Observed: stochastic nodes the data gives values for, and data nodes observed by a
    statement ``y ~ D(...)``. Constant data: every other value the data supplied.
    Dims: dimension names of their declared types.
    """
    from . import ast as A
    g = binding.graph
    targets = {f.value.id for f in g.factors
               if f.kind == "observe" and isinstance(f.value, A.Name)}
    observed, constant, dims = {}, {}, {}
    for name in g.order:
        role = binding.roles.get(name)
        if name in binding.arrays:
            value = np.asarray(binding.arrays[name])
        elif name in binding.static:
            value = np.asarray(binding.static[name])
        else:
            continue
        if role == "observed" or (role == "data" and name in targets):
            observed[name] = value
        elif role == "data":
            constant[name] = value
        else:
            continue
        t = g.nodes[name].type
        if t is not None and t.shape:
            dims[name] = tuple(e.id if isinstance(e, A.Name) else None for e in t.shape)
    return observed, constant, dims


# --------------------------------------------------------------------------- to ArviZ
class _Dims:
    """Dimension names per variable, consistent in size across every group."""

    def __init__(self, declared: dict):
        self.declared = declared
        self.sizes: dict[str, int] = {}
        self.out: dict[str, list] = {}

    def add(self, name: str, shape: tuple) -> None:
        if not shape or name in self.out:
            return
        want = list(self.declared.get(name) or ())
        names = []
        for i, n in enumerate(shape):
            d = want[i] if i < len(want) and len(want) == len(shape) else None
            if d is None or d in names or self.sizes.get(d, n) != n:
                d = f"{name}_dim_{i}"
            self.sizes[d] = n
            names.append(d)
        self.out[name] = names


def _split(draws: dict, predictive) -> tuple[dict, dict]:
    main = {k: v for k, v in draws.items() if k not in predictive}
    return main, {k: v for k, v in draws.items() if k in predictive}


def to_inference_data(post, prior=None):
    """``arviz.InferenceData`` of a result (see the module docstring for the groups)."""
    az = _arviz()
    roles = post.meta.get("roles", {}) or {}
    observed = dict(post.observed)
    groups: dict[str, dict] = {}
    if post.kind == "prior":
        groups["prior"] = dict(post.draws)
    else:
        generated = {k for k in post.draws if roles.get(k) == "generated"}
        groups["posterior"], groups["posterior_predictive"] = _split(post.draws, generated)
        stats = {ARVIZ_STATS.get(k, k.rstrip("_")): v for k, v in post.stats.items()}
        if "diverging" in stats:
            stats["diverging"] = np.asarray(stats["diverging"]).astype(bool)
        groups["sample_stats"] = stats
    if prior is not None:
        known = set(observed) | {k for k, r in roles.items() if r == "observed"}
        groups["prior"], groups["prior_predictive"] = _split(prior.draws, known)
    if observed:
        groups["observed_data"] = observed
    if post.constant_data:
        groups["constant_data"] = dict(post.constant_data)
    declared = {**(prior.meta.get("dims", {}) if prior is not None else {}), **post.meta.get("dims", {})}
    dims = _Dims(declared)
    for group, arrays in groups.items():
        lead = 0 if group in ("observed_data", "constant_data") else 2
        for name, arr in arrays.items():
            dims.add(name, np.shape(arr)[lead:])
    groups = {k: v for k, v in groups.items() if v}
    with warnings.catch_warnings():       # e.g. one draw of an optimisation: not a mistake
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        idata = az.from_dict(**groups, dims=dims.out)
    main = "posterior" if "posterior" in groups else "prior"
    if main in groups:
        info = {"kind": post.kind, "completed": post.completed, "timings": post.timings,
                "meta": post.meta, "names": list(post.draws)}
        idata[main].attrs[_ATTR] = json.dumps(info, default=json_default)
    return idata


# --------------------------------------------------------------------------- NetCDF
def write_netcdf(post, path, prior=None) -> None:
    """Atomically write ``post`` (and ``prior``) as NetCDF through ArviZ."""
    idata = to_inference_data(post, prior=prior)
    path = os.fspath(path)
    tmp = temp_path(path)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _values(ds) -> dict:
    return {str(k): np.asarray(v.values) for k, v in ds.data_vars.items()}


def read_netcdf(path) -> dict:
    """Keyword arguments of a Posterior from a NetCDF file (ppl's, or any ArviZ file)."""
    az = _arviz()
    where = os.fspath(path)
    try:
        with az.rc_context({"data.load": "eager"}):
            idata = az.from_netcdf(where)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{where}: not a readable NetCDF file ({e})") from None
    names = set(idata.groups())
    main = "posterior" if "posterior" in names else "prior" if "prior" in names else None
    if main is None:
        raise ValueError(f"{where}: no posterior or prior group in this NetCDF file")
    info = {}
    raw = idata[main].attrs.get(_ATTR)
    if isinstance(raw, str):
        with contextlib.suppress(json.JSONDecodeError):
            info = json.loads(raw)
    predictive = "posterior_predictive" if main == "posterior" else "prior_predictive"
    draws = _values(idata[main])
    if predictive in names:
        draws.update(_values(idata[predictive]))
    order = [k for k in info.get("names", []) if k in draws]
    draws = {k: draws[k] for k in order + [k for k in draws if k not in order]}
    stats = {}
    if main == "posterior" and "sample_stats" in names:
        for k, v in _values(idata["sample_stats"]).items():
            name = _FROM_ARVIZ.get(k, k + "__")
            stats[name] = v.astype(np.int64) if name in INT_STATS else v
    return dict(draws=draws, stats=stats,
                kind=info.get("kind", main),
                completed=bool(info.get("completed", True)),
                timings=dict(info.get("timings", {})),
                meta=restore_meta(info.get("meta", {})),
                observed=_values(idata["observed_data"]) if "observed_data" in names else {},
                constant_data=_values(idata["constant_data"]) if "constant_data" in names else {})
