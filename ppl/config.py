"""Process-wide settings: precision, JAX's persistent compilation cache, and Python's cyclic
garbage collector while programs are traced and compiled."""
from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager

# (JAX is imported where it is used: ppl/__init__.py imports this module before JAX, to pause the
# collector around that import with gc_paused)

_cache_dir = None


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ppl", "jax")


def enable_compile_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache (idempotent).

    The folder is ``path``, else ``$PPL_CACHE_DIR``, else ``~/.cache/ppl/jax``;
    ``PPL_CACHE=0`` (or ``path=""``) turns it off. Returns the folder in use, or None.
    """
    global _cache_dir
    if os.environ.get("PPL_CACHE", "1") == "0" or path == "":
        return None
    path = path or os.environ.get("PPL_CACHE_DIR") or default_cache_dir()
    if _cache_dir == path:
        return path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _cache_dir = path
    return path


@contextmanager
def gc_paused():
    """Python's cyclic garbage collector off for the block; after it, what the block imported frozen
    (``gc.freeze``) and the collector back as it was.

    Importing JAX and BlackJAX allocates hundreds of thousands of objects, and each full
    collection walks all of them. Under it, ``import ppl`` and the samplers' modules took
    0.557 s against 0.575 s (a fresh process each, medians of 16, alternating). Paused alone, the
    collector still walked them all once the block ended: a cold first draw of logistic
    regression spent 0.17-0.20 s of its 2.0 s in collections (the first three after ``import
    ppl``: 44, 28-44 and 80-87 ms), and 0.02 s with the imported objects frozen. Frozen objects
    (modules, functions, classes; and whatever else was alive when the block ended) are left out of
    every later collection; reference counting still frees them. The freeze is done only by a block
    that imported a module, so a loop of fits freezes nothing after its first; ``PPL_GC_FREEZE=0``
    turns it off. A collector the user turned off stays off, and nothing is frozen then."""
    was = gc.isenabled()
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if was:
            if len(sys.modules) > modules and os.environ.get("PPL_GC_FREEZE", "1") != "0":
                gc.freeze()
            gc.enable()


def float_dtype():
    """JAX's default float dtype: float64 under ppl's default precision, float32 with
    ``PPL_PRECISION=32`` (the positions' and the chains' states' dtype)."""
    import jax
    import numpy as np
    return jax.dtypes.canonicalize_dtype(np.float64)
