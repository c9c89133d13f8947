"""Import BlackJAX without importing ``scipy.fft`` (0.2-0.3 s of a first fit).

``import blackjax`` runs its package ``__init__``, which imports every algorithm, among them
``blackjax.diagnostics``: ``from scipy.fftpack import next_fast_len``. Importing
``scipy.fftpack`` imports ``scipy.fft`` with its backends, 0.19-0.31 s on the 2-core machine of
the benchmarks, and ppl's samplers never call it (ppl has its own diagnostics). So BlackJAX is
imported here once with a stand-in ``scipy.fftpack`` whose ``next_fast_len`` imports the real
module when it is first called, and the stand-in leaves ``sys.modules`` as soon as BlackJAX is in:
a later ``import scipy.fftpack`` gets SciPy's own module, and BlackJAX's ``next_fast_len`` gives
SciPy's answers. Anything else asked of the stand-in during the import is taken from the real
module. Nothing is done when either module is already imported.

Modules that import BlackJAX import this one first (``PPL_LEAN_BLACKJAX=0`` turns it off).
"""
from __future__ import annotations

import os
import sys
import types

__all__ = ["import_blackjax"]

_NAME = "scipy.fftpack"


def _real_fftpack():
    if isinstance(sys.modules.get(_NAME), _StandIn):
        del sys.modules[_NAME]
    import scipy.fftpack
    return scipy.fftpack


def next_fast_len(*args, **kwargs):
    """SciPy's ``scipy.fftpack.next_fast_len``, imported on the first call."""
    return _real_fftpack().next_fast_len(*args, **kwargs)


class _StandIn(types.ModuleType):
    def __getattr__(self, name):    # anything but next_fast_len: the real module's
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(_real_fftpack(), name)


def import_blackjax() -> None:
    if "blackjax" in sys.modules or _NAME in sys.modules or os.environ.get("PPL_LEAN_BLACKJAX", "1") == "0":
        return
    stand_in = _StandIn(_NAME)
    stand_in.next_fast_len = next_fast_len
    sys.modules[_NAME] = stand_in
    try:
        import blackjax  # noqa: F401
    finally:
        if sys.modules.get(_NAME) is stand_in:
            del sys.modules[_NAME]


import_blackjax()
