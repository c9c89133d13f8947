"""Import BlackJAX without what ppl's samplers never use: ``scipy.fft`` and optax (0.3-0.4 s of a
first fit), and one eager XLA compilation.

``import blackjax`` runs its package ``__init__``, which imports every algorithm:

* ``blackjax.diagnostics`` does ``from scipy.fftpack import next_fast_len``. Importing
  ``scipy.fftpack`` imports ``scipy.fft`` with its backends, 0.19-0.31 s on the 2-core machine of
  the benchmarks, and ppl has its own diagnostics.
* the CHEES adaptation, BlackJAX's L-BFGS and its variational methods ``import optax`` (0.1 s with
  the ``absl`` flags it brings in) and, while they are imported, only name ``optax.OptState`` and
  ``optax.GradientTransformation`` in annotations. ppl's optimisers and VI import optax themselves
  when they are used.
* ``blackjax.adaptation.step_size`` has a default argument ``jnp.log(2.0)``: an eager JAX operation
  at import, which compiles an XLA program (30-60 ms) that nothing of ppl's runs.

So BlackJAX is imported here once with stand-in ``scipy.fftpack`` and ``optax`` modules that
import the real ones when something is first asked of them (``next_fast_len`` called, an optax
function looked up), and with ``jnp.log`` of a Python number computed by numpy. The stand-ins
leave ``sys.modules`` as soon as BlackJAX is in, so a later ``import scipy.fftpack`` or ``import
optax`` gets the real module, and BlackJAX's own references to them give the real functions.
The two optax names BlackJAX's annotations take during the import are placeholders (the
annotations of ``blackjax.vi``'s functions show them). Nothing is done when BlackJAX or either
module is already imported.

Modules that import BlackJAX import this one first (``PPL_LEAN_BLACKJAX=0`` turns it off).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

import numpy as np

__all__ = ["import_blackjax"]

_FFTPACK, _OPTAX = "scipy.fftpack", "optax"
_ANNOTATION_ONLY = ("OptState", "GradientTransformation")   # what BlackJAX's modules read at import


class _StandIn(types.ModuleType):
    """A module that imports the real one, and answers from it, when an attribute it lacks is read."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_real(self.__name__), name)


def _real(name: str):
    if isinstance(sys.modules.get(name), _StandIn):
        del sys.modules[name]
    if name == _FFTPACK:
        import scipy.fftpack as module
    else:
        import optax as module
    return module


def next_fast_len(*args, **kwargs):
    """SciPy's ``scipy.fftpack.next_fast_len``, imported on the first call."""
    return _real(_FFTPACK).next_fast_len(*args, **kwargs)


class _Placeholder:
    """Stands for an optax class in the annotations BlackJAX evaluates while it is imported."""


def _numpy_log_of_numbers(log):
    def lean_log(x, *args, **kwargs):
        if isinstance(x, (int, float)) and not isinstance(x, bool) and not args and not kwargs:
            return np.log(np.float64(x))
        return log(x, *args, **kwargs)
    return lean_log


def import_blackjax() -> None:
    if "blackjax" in sys.modules or os.environ.get("PPL_LEAN_BLACKJAX", "1") == "0":
        return
    import jax.numpy as jnp

    stand_ins = {}
    if _FFTPACK not in sys.modules:
        stand_ins[_FFTPACK] = _StandIn(_FFTPACK)
        stand_ins[_FFTPACK].next_fast_len = next_fast_len
    if _OPTAX not in sys.modules and importlib.util.find_spec(_OPTAX) is not None:
        stand_ins[_OPTAX] = _StandIn(_OPTAX)
        for name in _ANNOTATION_ONLY:
            setattr(stand_ins[_OPTAX], name, type(name, (_Placeholder,), {"__module__": _OPTAX}))
    log = jnp.log
    sys.modules.update(stand_ins)
    jnp.log = _numpy_log_of_numbers(log)
    try:
        import blackjax  # noqa: F401
    finally:
        jnp.log = log
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
        if _OPTAX in stand_ins:     # from now on BlackJAX's `optax.OptState` is optax's own
            for name in _ANNOTATION_ONLY:
                delattr(stand_ins[_OPTAX], name)


import_blackjax()
