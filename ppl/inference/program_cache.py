"""The NUTS chunk as a serialised StableHLO program on disk (``jax.export``), so that a later
process with the same model, data layout and settings skips tracing and lowering it.

JAX's persistent cache (:func:`ppl.config.enable_compile_cache`) keeps compiled XLA programs,
but it finds one by hashing the lowered module: every process still traces the NUTS chunk in
Python and lowers it to MLIR first (eight schools: 0.3-0.5 s of a 0.9 s cached fit). Here the
lowered chunk itself is kept, under a key that needs only the log density's own trace (which the
sampler makes anyway, :func:`ppl.inference.parallel.density_data_size`):

* the log density's jaxpr as text and a digest of the constants it closes over (the model, its
  data layout and whatever the data fixed at binding: sufficient statistics, index structures);
* the sampler's settings that shape the program (chains, devices, chunk rows, tree depth, mass
  matrix, precision), the JAX settings that change lowering, and the argument shapes;
* the source of ppl itself and the versions of JAX, jaxlib and BlackJAX (the NUTS code).

The HMC and random-walk MH chunks (:mod:`ppl.inference.chunks`) are kept the same way, and so
is the starting-point search's program (``Model._init_program``: a cached eight schools fit 0.02 s
sooner). A file
that cannot be read, or whose program does not accept the arguments, is removed and the chunk
traced as usual; a program that jax.export refuses is marked so that it is not traced twice.
``PPL_CACHE=0`` turns this off with JAX's cache. The files are JAX's own serialisation format
(flatbuffers), never pickle.
"""
from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import jax
import numpy as np

__all__ = ["chunk_key", "lower_chunk", "programs_dir", "COUNTS"]

COUNTS = {"stored": 0, "read": 0}   # programs written and read back in this process
_PPL_ROOT = Path(__file__).resolve().parent.parent
# JAX settings that change a lowered program without changing the log density's jaxpr
_JAX_SETTINGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_default_prng_impl", "jax_threefry_partitionable")
SUFFIX = ".stablehlo"
_PATCHING = threading.Lock()   # one lowering at a time swaps JAX's LAPACK hook


def programs_dir() -> str | None:
    """The folder of the serialised programs (beside JAX's cache), or None when caching is off."""
    from ..config import _cache_dir
    return os.path.join(_cache_dir, "ppl-programs") if _cache_dir else None


@lru_cache(maxsize=1)
def _code_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(_PPL_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(_PPL_ROOT)).encode())
        h.update(path.read_bytes())
    import blackjax
    import jaxlib
    h.update(f"jax {jax.__version__} jaxlib {jaxlib.__version__} blackjax {blackjax.__version__}".encode())
    return h.hexdigest()


def _digest_consts(h, consts) -> None:
    for c in consts:
        a = np.asarray(c)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())


def chunk_key(density_jaxpr, settings: tuple, args, devices: list) -> str | None:
    """The file name for a chunk: ``density_jaxpr`` the log density's closed jaxpr, ``settings``
    what else shapes the program, ``args`` the chunk's arguments (their shapes and dtypes count),
    ``devices`` where it runs. None when caching is off or the jaxpr's constants cannot be read."""
    if programs_dir() is None:
        return None
    try:
        h = hashlib.sha256(_code_digest().encode())
        h.update(str(density_jaxpr.jaxpr).encode())
        _digest_consts(h, density_jaxpr.consts)
        h.update(repr(settings).encode())
        h.update(repr([str(d) for d in devices]).encode())
        h.update(repr([getattr(jax.config, name, None) for name in _JAX_SETTINGS]).encode())
        h.update(str(jax.tree.structure(args)).encode())
        h.update(repr([(np.shape(a), str(getattr(a, "dtype", None))) for a in jax.tree.leaves(args)]).encode())
    except Exception:  # noqa: BLE001 - a key we cannot make is only a cache miss
        return None
    return h.hexdigest()[:40]


_REGISTERED: set = set()


def _named_tuples(tree, found: set) -> set:
    """The NamedTuple classes in ``tree`` (nested tuples, lists and dicts of arrays)."""
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        found.add(type(tree))
    if isinstance(tree, (tuple, list)):
        for child in tree:
            _named_tuples(child, found)
    elif isinstance(tree, dict):
        for child in tree.values():
            _named_tuples(child, found)
    return found


def _register_types(args, result_types: tuple) -> None:
    """jax.export serialises the argument and result trees by the names of their nodes: register
    the NamedTuples of the chunk's state (found in ``args``) and of its draws (``result_types``)."""
    for cls in _named_tuples(args, set(result_types)) - _REGISTERED:
        try:
            jax.export.register_namedtuple_serialization(cls, serialized_name=f"{cls.__module__}.{cls.__qualname__}")
        except ValueError:   # already registered (e.g. by another copy of this module)
            pass
        _REGISTERED.add(cls)


def _read(path: str):
    try:
        with open(path, "rb") as fh:
            return jax.export.deserialize(bytearray(fh.read()))
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a damaged or foreign file: drop it, trace afresh
        _remove(path)
        return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _write(path: str, blob: bytes) -> bool:
    """Store ``blob`` at ``path`` whole or not at all (written beside it, then renamed: a
    process reading meanwhile sees the old file or the new one)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
        return True
    except OSError:   # a folder we cannot write to, a full disk: only a miss next time
        _remove(tmp)
        return False


def _lower_exported(exported, args):
    """``jax.jit(exported.call).lower(*args)``, without readying LAPACK where the program calls none.
    ``jax.export`` readies LAPACK for every CPU program it lowers, which imports ``scipy.linalg``
    (0.12 s in a fresh process, a third of eight schools' cached fit); a program that does call
    LAPACK (a custom call named ``lapack_...``) is lowered as JAX does it, and JAX readies LAPACK
    itself when it first compiles one otherwise. Without JAX's private hook (another JAX version)
    nothing changes."""
    call = jax.jit(exported.call)
    try:
        from jax._src.export import _export
        ready = _export._ensure_backends_initialized
    except (ImportError, AttributeError):
        return call.lower(*args)
    if b"lapack" in bytes(exported.mlir_module_serialized):
        return call.lower(*args)
    with _PATCHING:
        _export._ensure_backends_initialized = lambda platforms: None
        try:
            return call.lower(*args)
        finally:
            _export._ensure_backends_initialized = ready


def lower_chunk(jitted, args, key: str | None, result_types: tuple = ()):
    """``jitted.lower(*args)`` by way of the stored program for ``key`` (stored now if there is
    none): on a hit nothing is traced. ``result_types``: the NamedTuple classes of the results
    that are not in ``args`` (the chunk's draws). Returns ``(lowered, hit)``; without a key, or
    if the export route fails, the plain lowering and ``hit=False``."""
    if key is None:
        return jitted.lower(*args), False
    path = os.path.join(programs_dir(), key + SUFFIX)
    if os.path.exists(path + ".unsupported"):
        return jitted.lower(*args), False
    try:
        _register_types(args, result_types)
        exported = _read(path)
        if exported is not None:
            try:
                lowered = _lower_exported(exported, args)
                COUNTS["read"] += 1
                return lowered, True
            except Exception:  # noqa: BLE001 - a stored program that does not take these arguments
                _remove(path)
        exported = jax.export.export(jitted)(*args)
        try:
            blob = exported.serialize()
        except Exception:  # noqa: BLE001 - e.g. a state type it cannot name: not exported again
            _mark_unsupported(path)
        else:
            COUNTS["stored"] += _write(path, blob)
        return _lower_exported(exported, args), False
    except Exception:  # noqa: BLE001 - e.g. flatbuffers missing, a custom call export refuses
        # a genuine error in the program raises here, before anything is remembered
        lowered = jitted.lower(*args)
        _mark_unsupported(path)
        return lowered, False


def _mark_unsupported(path: str) -> None:
    """Remember that this program does not go through jax.export, so that later processes do
    not trace it twice."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path + ".unsupported", "wb").close()
    except OSError:
        pass
