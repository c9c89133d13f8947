"""Distribution registry: ``DISTRIBUTIONS[name]`` / ``get(name)``.

Implementations live in distributions_continuous / _discrete / _multivariate;
each exports ``SPECS`` (name -> fields) that this module turns into
``Distribution`` records. Parameterisations follow Stan.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppl import distributions_continuous as _continuous
from ppl import distributions_discrete as _discrete
from ppl import distributions_multivariate as _multivariate


@dataclass(frozen=True)
class Distribution:
    """One distribution family. ``logpdf`` returns the (unsummed) batch of log densities."""

    name: str
    params: tuple[str, ...]
    param_event_dims: tuple[int, ...]
    event_dim: int
    discrete: bool
    logpdf: Callable
    sample: Callable
    support: Callable
    event_shape: Callable
    lcdf: Callable | None = None
    lccdf: Callable | None = None
    icdf: Callable | None = None
    mean: Callable | None = None
    variance: Callable | None = None
    # the sum of ``logpdf`` over the whole batch, where a summed form is cheaper (a mixture's)
    logpdf_sum: Callable | None = None

    def summed_logpdf(self, x, *params):
        """The log density summed over the batch."""
        if self.logpdf_sum is not None:
            return self.logpdf_sum(x, *params)
        return jnp.sum(self.logpdf(x, *params))


def _scalar_event_shape(*param_shapes):
    return ()


def _accepts_event_shape(sample: Callable) -> Callable:
    """Give every sampler an (ignored unless needed) ``event_shape=`` keyword."""
    if "event_shape" in inspect.signature(sample).parameters:
        return sample

    @functools.wraps(sample)
    def wrapped(key, batch_shape, *params, event_shape=None):
        return sample(key, batch_shape, *params)

    return wrapped


def _build(name: str, spec: dict) -> Distribution:
    fields = dict(
        param_event_dims=(0,) * len(spec["params"]),
        event_dim=0,
        discrete=False,
        event_shape=_scalar_event_shape,
    )
    fields.update(spec)
    fields["sample"] = _accepts_event_shape(fields["sample"])
    return Distribution(name=name, **fields)


DISTRIBUTIONS: dict[str, Distribution] = {
    name: _build(name, spec)
    for module in (_continuous, _discrete, _multivariate)
    for name, spec in module.SPECS.items()
}


def get(name: str) -> Distribution:
    """The distribution called ``name``; KeyError if unknown."""
    try:
        return DISTRIBUTIONS[name]
    except KeyError:
        raise KeyError(f"unknown distribution {name!r}") from None


__all__ = ["Distribution", "DISTRIBUTIONS", "get"]


def sample_ordered(dist, args, batch, event, key, positive, tries=1000):
    """A draw of `x: ordered[K] ~ D(...)`: D restricted to increasing vectors (and to positive
    ones for positive_ordered), as the density defines it. Sorting iid draws is exact when the
    K elements are exchangeable (scalar arguments); otherwise draws are rejected until ordered."""
    shape = tuple(batch) + tuple(event)
    exchangeable = all(np.ndim(a) == 0 for a in args)

    def propose(k):
        x = dist.sample(k, shape, *args, event_shape=event)
        return jnp.sort(x, axis=-1) if exchangeable else x

    def ok(x):
        good = jnp.all(jnp.diff(x, axis=-1) > 0, axis=-1)
        return good & jnp.all(x > 0, axis=-1) if positive else good

    def cond(state):
        i, _, x = state
        return (i < tries) & ~jnp.all(ok(x))

    def body(state):
        i, k, x = state
        k, sub = jax.random.split(k)
        fresh = propose(sub)
        keep = ok(x)[..., None]
        return i + 1, k, jnp.where(keep, x, fresh)

    k0, k1 = jax.random.split(key)
    _, _, x = jax.lax.while_loop(cond, body, (0, k1, propose(k0)))
    return x
