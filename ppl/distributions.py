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
