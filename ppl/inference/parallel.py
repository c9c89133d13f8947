"""Where chains run: one program per chain on its own device, or chains vectorised; and the
XLA settings made for them at import (host devices, the small-loop threshold).

On CPU, ppl asks XLA for several host devices when it is imported
(:func:`configure_xla`, before JAX starts its backend) and runs the chains of a
chunk across them: each device runs an *unbatched* one-chain
program (or a vmap of a few chains when there are more chains than devices), so no chain
waits for another's longest NUTS tree. That program is compiled once, as one replica per device
(:mod:`ppl.inference.per_device`; ``PPL_PER_DEVICE=0``: one SPMD program, ``jax.shard_map``).  Measured on 2 cores: the one-chain chunk program
alone compiled in 1.6 s against 2.4 s vectorised; end to end, in the benchmark harness
(``bench/``, configurations ``ppl`` and ``ppl-vec``), the two layouts were within noise of
each other (eight schools 0.19 vs 0.22 s of warm-up + sampling, logistic 3.07 vs 3.20 s,
1024 chains 14.4 vs 15.8 s), so on a 2-core machine this is a small lever.

On GPU the default stays one device running all chains vectorised (what a GPU is for);
``devices=k`` splits them across k accelerators.  ``shard_data`` (large N) uses XLA's SPMD
partitioner instead: chains and data rows split over the devices, the log-likelihood
summed across shards (:func:`distribute`).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import jax
import numpy as np

from .per_device import PerDeviceLowering, local_args, per_device_wanted
from .program_cache import lower_chunk
from .xla_options import compile_with

__all__ = ["configure_xla", "small_loop_flag", "outer_loops_apart", "chain_devices", "over_chains", "compile_chunk", "lower_over_chains", "lower_split",
           "compile_lowered", "density_data_size", "density_jaxpr", "density_ops", "density_profile", "DensityProfile", "run_work",
           "chains_per_lane", "place_chains", "place", "distribute", "DeferredInit", "StartingPoints"]

_FLAG = "--xla_force_host_platform_device_count"


SMALL_LOOP_BYTES = 1 << 20
"""XLA's CPU compiler runs a ``while`` loop whose body touches fewer bytes than this as one
compiled function ("small while loop hoisting") instead of dispatching each of its operations
from the thunk runtime (XLA's default: 1024 bytes). Hoisted, NUTS's leapfrog loop stops paying
the runtime's dispatch of its kernels, some 5 us a leapfrog step: at 32 KiB (ppl's setting until
2026-12-07, which already hoisted every loop of small models such as eight schools) the loops of
the mixtures (1,000 data) and hierarchical linear regression stayed out; at 1 MiB their leapfrog
steps cost 9.1 against 13.8 us and 2.1 against 4.2 us (4 chains x 2000 iterations, 2 cores,
the same draws). A loop holding a sort, a custom call (LAPACK) or a scatter is never hoisted,
nor is one touching more (logistic regression's 800 kB design matrix). So that a chunk of a
larger density is not compiled as one function (0.4-0.7 s longer), NUTS keeps its outer loops
apart (:func:`outer_loops_apart`)."""

LARGE_DENSITY_OPS = 1024
"""Above this many operations (:func:`density_ops`) a log density's NUTS loops pass 32 KiB: eight
schools (201) and the small regressions (52-276) are hoisted whole, hierarchical linear
regression (2,882) and the mixtures (45,418) are not."""


def outer_loops_apart(ops: int | None) -> bool:
    """Whether a NUTS chunk of a log density of ``ops`` operations (within Gibbs, where they are
    unknown, the sampler passes the count of data the density reads) keeps its tree-doubling loop, and so every loop around it,
    out of XLA's small-loop hoisting (:func:`ppl.inference.nuts_kernel.build_kernel`), leaving only
    the leapfrog and U-turn loops compiled as one function each. Small densities are hoisted whole,
    which runs fastest and compiles as soon; larger ones then compile longer as one function, for
    less time sampling. Measured 2026-12-07 (5 fits each, 4 chains x 2000 iterations, medians):
    hierarchical linear compiles in 1.50 s whole against 1.25 s apart and samples in 0.138 against
    0.223 s; mixture_hard 1.58 against 1.31 s, 0.397 against 0.460 s; mixture_separated 1.85
    against 1.74 s, 0.461 against 0.555 s. For a run of that length apart is the sooner result
    (0.17 and 0.21 s sooner; a tie on mixture_separated); a run several times longer would be
    sooner whole."""
    return ops is not None and int(ops) > LARGE_DENSITY_OPS


def small_loop_flag(nbytes: int = SMALL_LOOP_BYTES) -> str:
    """The ``XLA_FLAGS`` entry that sets XLA's CPU small-while-loop threshold."""
    return f"--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={int(nbytes)}"


def configure_xla() -> None:
    """Set up XLA for chains on CPU before JAX starts its backend: one host device per core
    (at least 4) unless the user chose (``XLA_FLAGS`` names a count, or ``PPL_HOST_DEVICES=n``;
    ``PPL_HOST_DEVICES=1`` turns this off), and the small-loop threshold above unless
    ``XLA_FLAGS`` already has ``xla_backend_extra_options``. Nothing is changed once JAX's
    backends are running (the settings could not take effect)."""
    flags = os.environ.get("XLA_FLAGS", "")
    try:
        from jax._src import xla_bridge
        if xla_bridge.backends_are_initialized():
            return
    except (ImportError, AttributeError):  # pragma: no cover - a JAX without this hook
        return
    added = []
    if _FLAG.lstrip("-") not in flags:
        wanted = os.environ.get("PPL_HOST_DEVICES", "")
        n = int(wanted) if wanted.strip().isdigit() else max(4, os.cpu_count() or 1)
        if n > 1:
            added.append(f"{_FLAG}={n}")
    if "xla_backend_extra_options" not in flags:
        added.append(small_loop_flag())
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()


def chain_devices(chains: int, requested: int | None = None) -> list:
    """The devices the chains are split across (each gets ``chains // len(result)`` chains).

    ``requested=None``: on CPU, the most devices (up to the host devices available) that
    divide the chains evenly; elsewhere one device.  ``requested=k``: exactly k devices.

    Only this process's devices count: after ``jax.distributed.initialize`` every process runs
    its own chains on its own devices (``jax.devices()`` would list the other hosts' too)."""
    available = jax.local_devices()
    if requested is not None:
        k = int(requested)
        if k < 1:
            raise ValueError(f"devices must be a whole number >= 1, got {requested!r}")
        if k > len(available):
            where = " on this host" if jax.process_count() > 1 else ""
            raise ValueError(f"{k} devices requested but only {len(available)} are visible{where}; on CPU set "
                             f"XLA_FLAGS={_FLAG}={k} (or PPL_HOST_DEVICES={k}) before starting Python")
        if chains % k:
            raise ValueError(f"{chains} chains cannot be split evenly across {k} devices")
        return available[:k]
    if available[0].platform != "cpu":
        return available[:1]
    k = max(d for d in range(1, min(chains, len(available)) + 1) if chains % d == 0)
    return available[:k]


def over_chains(one_chain: Callable, chains: int, devices: list) -> Callable:
    """``f(states, *shared) -> outputs`` running ``one_chain(state, *shared)`` for every chain
    (the leading axis of ``states`` and of every output), split across ``devices``."""
    local = chains // len(devices)
    if local == 1:
        def inner(states, *shared):
            out = one_chain(jax.tree.map(lambda a: a[0], states), *shared)
            return jax.tree.map(lambda a: a[None], out)
    else:
        def inner(states, *shared):
            return jax.vmap(one_chain, in_axes=(0,) + (None,) * len(shared))(states, *shared)
    if len(devices) == 1:
        return inner
    from jax.sharding import PartitionSpec as P
    mesh = _sharding(devices, ()).mesh

    def split(states, *shared):
        f = jax.shard_map(inner, mesh=mesh, in_specs=(P("chains"),) + (P(),) * len(shared),
                          out_specs=P("chains"), check_vma=False)
        return f(states, *shared)

    return split


def _sharding(devices: list, spec):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    return NamedSharding(Mesh(np.array(devices), ("chains",)), P(*spec))


def place_chains(carry, devices: list):
    """The chain states (leading axis of every array) split by chain across ``devices``."""
    if len(devices) == 1:
        return jax.device_put(carry, devices[0])
    return jax.device_put(carry, _sharding(devices, ("chains",)))


def place(carry, data, devices: list):
    """Put the chain states (split by chain) and the data (whole, on every device) where the
    program runs, once, so no chunk copies them again."""
    whole = devices[0] if len(devices) == 1 else _sharding(devices, ())
    return place_chains(carry, devices), jax.device_put(data, whole)


def distribute(carry, data, devices: list, shard_data: bool = False):
    """For XLA's SPMD partitioner: chains split across ``devices``; data replicated, or with
    ``shard_data`` split along their first axis (XLA then sums the log-likelihood across shards)."""
    n = len(devices)

    def put(a):
        a = np.asarray(a)
        rows = shard_data and a.ndim >= 1 and a.shape[0] % n == 0 and a.shape[0] >= n
        return jax.device_put(a, _sharding(devices, ("chains",) if rows else ()))

    return place_chains(carry, devices), jax.tree.map(put, data)


def compile_chunk(one_chain: Callable, carry, rows, data, params, devices: list, spmd: bool = False,
                  options: dict | None = None, meanwhile: Callable | None = None, cache_key: str | None = None,
                  result_types: tuple = ()):
    """Compile ``one_chain`` for every chain of ``carry`` (leading axis) on ``devices``
    (:func:`lower_over_chains`, then :func:`compile_lowered`). Returns the compiled program and
    what ``meanwhile()``, called while XLA compiles, returned."""
    lowered = lower_over_chains(one_chain, carry, rows, data, params, devices, spmd, cache_key, result_types)
    return compile_lowered(lowered, options, meanwhile)


def lower_over_chains(one_chain: Callable, carry, rows, data, params, devices: list, spmd: bool = False,
                      cache_key: str | None = None, result_types: tuple = ()):
    """``one_chain`` for every chain of ``carry`` (leading axis) on ``devices``, lowered: on several
    devices one device's program, to be compiled as a replica per device
    (:class:`~ppl.inference.per_device.PerDeviceLowering`; ``PPL_PER_DEVICE=0``, or a JAX without
    the hooks it uses: one program across them, ``jax.shard_map``), or with ``spmd`` one vectorised
    program that XLA's partitioner splits following the placement of ``carry`` and ``data`` (for
    data sharded by rows). ``cache_key`` (:func:`ppl.inference.program_cache.chunk_key`): the
    lowered program is kept on disk under it, and read back instead of tracing when it is there;
    ``result_types``: the NamedTuple classes of its results that are not in its arguments (the draws)."""
    chains = jax.tree.leaves(carry)[0].shape[0]
    args = (carry, rows, data, params)
    if spmd:
        return lower_chunk(jax.jit(over_chains(one_chain, chains, devices[:1])), args, None, result_types)[0]

    def lower(fn, fn_args, per_device: bool):
        key = cache_key + "-per-device" if cache_key is not None and per_device else cache_key
        return lower_chunk(jax.jit(fn), fn_args, key, result_types)[0]

    return lower_split(one_chain, args, chains, devices, lower)


def lower_split(one_chain: Callable, args: tuple, chains: int, devices: list, lower: Callable):
    """``one_chain`` for every chain of ``args[0]`` (the chain states, leading axis) split across
    ``devices``, lowered by ``lower(fn, args, per_device)``: on several devices one device's share
    (:func:`~ppl.inference.per_device.local_args`), to be compiled as a replica per device
    (:class:`~ppl.inference.per_device.PerDeviceLowering`); with ``PPL_PER_DEVICE=0``, on one
    device, or as that lowering's fallback, one program across them (:func:`over_chains`)."""
    across = lambda: lower(over_chains(one_chain, chains, devices), args, False)  # noqa: E731
    if len(devices) > 1 and per_device_wanted():
        local = lower(over_chains(one_chain, chains // len(devices), devices[:1]), local_args(args, chains, devices),
                      True)
        return PerDeviceLowering(local, devices, chains, fallback=across)
    return across()


def compile_lowered(lowered, options: dict | None = None, meanwhile: Callable | None = None):
    """``lowered`` compiled with XLA's ``options`` (:func:`~ppl.inference.xla_options.compiler_options`, through
    :func:`compile_with`), and what ``meanwhile()`` returned: XLA compiles on one core and lets go
    of Python, so ``meanwhile`` runs beside it (if it fails, its error is raised at once; the
    compilation finishes unseen)."""
    if meanwhile is None:
        return compile_with(lowered, options), None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ppl-xla")
    try:
        compiling = pool.submit(compile_with, lowered, options)
        other = meanwhile()
        return compiling.result(), other
    finally:
        pool.shutdown(wait=False)


def density_jaxpr(logdensity_fn: Callable, dim: int, dtype, data):
    """The closed jaxpr of ``logdensity_fn(position, data)`` for a ``dim`` vector position (for a
    jitted function, JAX's cached trace, which the chunk's own trace reuses)."""
    pos = jax.ShapeDtypeStruct((int(dim),), dtype)
    trace = getattr(logdensity_fn, "trace", None)
    return trace(pos, data).jaxpr if trace is not None else jax.make_jaxpr(logdensity_fn)(pos, data)


def density_data_size(logdensity_fn: Callable, dim: int, dtype, data, closed=None) -> int:
    """How many numbers of ``data`` one evaluation of ``logdensity_fn(position, data)`` reads (the
    position a ``dim`` vector): the data arrays its traced program uses (arrays only other programs
    need, such as the rows that sufficient statistics replace, do not count). The trace is JAX's,
    cached for the chunk's; ``closed``: that trace, when the caller has it (:func:`density_jaxpr`)."""
    jaxpr = (closed if closed is not None else density_jaxpr(logdensity_fn, dim, dtype, data)).jaxpr
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    leaves = jax.tree.leaves(data)
    return sum(int(np.size(x)) for x, v in zip(leaves, jaxpr.invars[1:]) if id(v) in used)


class DeferredInit(NamedTuple):
    """Starting points not searched for yet: ``shape`` (chains, dim) is known, so the sampler
    compiles its chunk first and calls ``find()`` while XLA compiles (:func:`compile_chunk`)."""

    shape: tuple
    find: Callable   # () -> (chains, dim) positions, or StartingPoints


class StartingPoints(NamedTuple):
    """The chains' starting positions with the log density and its gradient there (as the
    starting-point search computes them), so the sampler need not evaluate them again."""

    position: np.ndarray     # (chains, dim)
    logdensity: np.ndarray   # (chains,)
    grad: np.ndarray         # (chains, dim)


class DensityProfile(NamedTuple):
    """What the XLA options and the on-disk key of a chunk go by: the traced log density
    (:func:`density_jaxpr`), the numbers of data one evaluation reads (:func:`density_data_size`)
    and its count of scalar operations (:func:`density_ops`)."""

    closed: object
    data_size: int
    ops: int


_PROFILES: dict = {}


def density_profile(logdensity_fn: Callable, dim: int, dtype, data) -> DensityProfile:
    """The :class:`DensityProfile` of ``logdensity_fn(position, data)``, traced once per function
    and data layout in a process (new data of the same shapes reuse it, as they reuse the chunk)."""
    leaves, treedef = jax.tree.flatten(data)
    key = (logdensity_fn, int(dim), str(np.dtype(dtype)), treedef,
           tuple((np.shape(x), str(getattr(x, "dtype", type(x).__name__))) for x in leaves))
    if key not in _PROFILES:
        closed = density_jaxpr(logdensity_fn, dim, dtype, data)
        _PROFILES[key] = DensityProfile(closed, density_data_size(logdensity_fn, dim, dtype, data, closed=closed),
                                        density_ops(closed))
    return _PROFILES[key]


def density_ops(closed) -> int:
    """About how many scalar operations one evaluation of a traced log density makes: each
    equation counts the elements of its largest operand or result (a reduction or a product its
    input's); a ``scan``'s body counts once per step (recurrences, HMM forward passes), the
    bodies of calls, branches and ``while`` loops (whose trip count is not known) once. Measured against
    the harness models' log density and gradient in a compiled loop it is 0.14-0.7 ns per
    operation on this 2-core machine (logistic 330,198 operations 46 us, hier_linear 2,882 2.1 us,
    the mixtures 45,418 22 us, eight schools 201 0.1 us)."""
    def count(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            inner = [v for v in eqn.params.values() if hasattr(v, "eqns") or hasattr(v, "jaxpr")]
            inner += [b for v in eqn.params.values() if isinstance(v, tuple) for b in v
                      if hasattr(b, "eqns") or hasattr(b, "jaxpr")]
            if inner:
                body = sum(count(getattr(j, "jaxpr", j)) for j in inner)
                n += body * int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else body
                continue
            sizes = [int(np.prod(v.aval.shape)) for v in list(eqn.invars) + list(eqn.outvars)
                     if hasattr(v, "aval") and hasattr(v.aval, "shape")]
            n += max(sizes, default=1)
        return n
    return count(closed.jaxpr)


def run_work(ops: int | None, iterations: int, chains: int, devices: list) -> float | None:
    """The work a run asks of each core, in density operations: ``ops`` (:func:`density_ops`;
    None: unknown) x iterations x the chains one core runs (chains over the devices in use, at
    most one device per core)."""
    if ops is None:
        return None
    return float(ops) * max(int(iterations), 1) * chains_per_lane(chains, devices)


def chains_per_lane(chains: int, devices: list) -> float:
    """How many chains one core runs one after another: chains over the devices in use, at most one
    device per core (at least 1)."""
    lanes = max(1, min(len(devices), os.cpu_count() or 1))
    return max(1.0, chains / lanes)
