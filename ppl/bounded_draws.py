"""Drawing a continuous node within its declared bounds (``sigma: real<lower=0> ~ ...``), for
ancestral simulation and generated quantities. ``bounds`` is the pair of evaluated bounds, None
where a side is not declared.

- Bounds that contain the distribution's whole support (known without its parameters, as for
  ``real<lower=0> ~ gamma(2, 1)``) change nothing: a plain draw.
- A symmetric distribution cut at its location, one side declared (``real<lower=0> ~
  student_t(3, 0, 1)``, Stan's half-t): a draw's distance from the location, on the bound's side.
- Otherwise the inverse CDF between the bounds' CDF values; a distribution without one is refused.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ModelError
from .evaluate import is_concrete

__all__ = ["draw_within", "SYMMETRIC_LOCATION"]

# symmetric about a location parameter: cut there, a draw's distance from it has the cut law
SYMMETRIC_LOCATION = {"normal": "mu", "student_t": "mu", "cauchy": "mu", "logistic": "mu", "laplace": "mu"}


def draw_within(node, bounds, dist, args, batch, key):
    """A draw of ``node`` (its name and span for errors) from ``dist(*args)`` within ``bounds``."""
    if bounds_hold_support(bounds, dist, args):
        return dist.sample(key, batch, *args, event_shape=())
    if dist.lcdf is None or dist.icdf is None:
        reflected = draw_reflected(bounds, dist, args, batch, key)
        if reflected is not None:
            return reflected
        raise ModelError(f"cannot simulate `{node.name}`: `{dist.name}` restricted to the declared bounds "
                         "has no inverse CDF", node.span)
    lo = bounds[0] if bounds[0] is not None else -jnp.inf
    hi = bounds[1] if bounds[1] is not None else jnp.inf
    plo = jnp.exp(dist.lcdf(jnp.asarray(lo, float), *args))
    phi = jnp.exp(dist.lcdf(jnp.asarray(hi, float), *args))
    q = jax.random.uniform(key, batch, minval=0.0, maxval=1.0)
    return jnp.clip(dist.icdf(plo + q * (phi - plo), *args), lo, hi)


def bounds_hold_support(bounds, dist, args) -> bool:
    """Whether the bounds contain the distribution's whole support, known without tracing."""
    support = dist.support(*args)
    for bound, edge, outside in ((bounds[0], support.lower, np.greater), (bounds[1], support.upper, np.less)):
        if bound is None:
            continue
        if edge is None or not (is_concrete(bound) and is_concrete(edge)) or np.any(outside(bound, edge)):
            return False
    return True


def draw_reflected(bounds, dist, args, batch, key):
    """The reflection for a symmetric distribution cut at its location; None where it does not apply."""
    if dist.name not in SYMMETRIC_LOCATION or (bounds[0] is None) == (bounds[1] is None):
        return None
    loc = args[dist.params.index(SYMMETRIC_LOCATION[dist.name])]
    bound = bounds[0] if bounds[0] is not None else bounds[1]
    if not (is_concrete(bound) and is_concrete(loc)) or not np.all(np.asarray(bound) == np.asarray(loc)):
        return None
    away = jnp.abs(dist.sample(key, batch, *args, event_shape=()) - loc)
    return loc + away if bounds[0] is not None else loc - away
