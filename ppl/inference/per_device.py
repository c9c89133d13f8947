"""Chains split across devices as one program, compiled once and run as a replica per device.

Each device runs the same program on its own chains (one chain, or a vmap of its share). As one
SPMD program across the devices (``jax.shard_map``, ppl's way until 2026-12) XLA compiles it
through its sharding passes, Shardy's propagation and the SPMD partitioner, which cost about
0.1 s of logistic regression's 0.8 s compile although nothing is partitioned. Here the program
for the first device's share of the chains is lowered as a single-device program and compiled
with one replica per device (XLA's ``num_replicas``, as ``jax.pmap`` once did): compiled once,
with no partitioning, each replica run by its own device on its own arguments. Arguments are
placed as for the SPMD program (chain states split by chain across the devices, data whole on
each), each replica takes its device's piece, and the replicas' results are put back together as
arrays split by chain, so callers see what the SPMD program gave them, draw for draw up to
rounding (XLA's passes order a few operations differently: positions agree to 1e-14).

It reaches into JAX below its public API (``jax._src.compiler``, a lowering's compile
arguments); a JAX without those falls back to the SPMD program, as ``PPL_PER_DEVICE=0`` does.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Callable

import jax
import numpy as np

__all__ = ["PerDeviceLowering", "PerDeviceProgram", "local_args", "per_device_wanted"]


def per_device_wanted() -> bool:
    """Whether chains split across devices run as replicas of one program (``PPL_PER_DEVICE``,
    default 1) rather than one SPMD program (0)."""
    return os.environ.get("PPL_PER_DEVICE", "1").strip() != "0"


def local_args(args, chains: int, devices: list):
    """``args`` (chain states first: their leading axis is the chains) as the first device sees
    them, shapes only: the chains cut to its share (``chains // len(devices)``), every array on
    that device."""
    carry, *rest = args
    local = chains // len(devices)
    on = jax.sharding.SingleDeviceSharding(devices[0])

    def spec(a, lead=None):
        shape = tuple(np.shape(a)) if lead is None else (lead,) + tuple(np.shape(a)[1:])
        dtype = a.dtype if hasattr(a, "dtype") else jax.numpy.asarray(a).dtype
        return jax.ShapeDtypeStruct(shape, dtype, sharding=on)

    return (jax.tree.map(lambda a: spec(a, local), carry),) + tuple(jax.tree.map(spec, r) for r in rest)


class PerDeviceLowering:
    """The lowered program of one device's chains, to run on ``devices``; ``compile(options)`` as a
    JAX ``Lowered``'s (:func:`ppl.inference.xla_options.compile_with` calls it). ``fallback()``:
    the SPMD lowering, compiled instead when this JAX lacks what the replicas need."""

    def __init__(self, lowered, devices: list, chains: int, fallback: Callable):
        self.lowered, self.devices, self.chains, self.fallback = lowered, list(devices), int(chains), fallback

    def compile(self, compiler_options=None):
        try:
            get_options, compile_or_get_cached, device_list, get_backend, args = _hooks(self.lowered)
            kept, callbacks = sorted(args["kept_var_idx"]), args["host_callbacks"]
            assignment = np.array(self.devices).reshape(len(self.devices), 1)
            backend = get_backend(self.devices[0].platform)
            options = get_options(num_replicas=len(self.devices), num_partitions=1, device_assignment=assignment,
                                  env_options_overrides=compiler_options, backend=backend)
            timed = _timed_as_jax_does(self.lowered)
        except (ImportError, AttributeError, KeyError, TypeError):   # another JAX: the SPMD program
            return self.fallback().compile(compiler_options)
        with timed:
            executable = compile_or_get_cached(backend, self.lowered.compiler_ir("stablehlo"), assignment, options,
                                               callbacks, device_list(tuple(self.devices)))
        return PerDeviceProgram(executable, self.devices, self.chains, kept, self.lowered.out_tree,
                                args.get("global_out_avals", ()))


def _timed_as_jax_does(lowered):
    """The context JAX compiles a program in: it logs "Finished XLA compilation ..." (with
    ``jax_log_compiles``) and reports the time as JAX's backend-compile event (``jax.monitoring``,
    which the benchmark harness sums as compile time)."""
    from jax._src import dispatch
    return dispatch.log_elapsed_time("Finished XLA compilation of {fun_name} in {elapsed_time:.9f} sec",
                                     fun_name=getattr(lowered._lowering, "_name", "replicas"),
                                     event=dispatch.BACKEND_COMPILE_EVENT)


def _hooks(lowered):
    """What the replicas need from JAX below its public API: its compile options and compile (with
    the persistent cache), the device list type, the backend, and the lowering's compile arguments
    (which arguments the program kept, its host callbacks, its results' shapes)."""
    from jax._src import compiler, xla_bridge
    from jax._src.lib import xla_client
    return (compiler.get_compile_options, compiler.compile_or_get_cached, xla_client.DeviceList,
            xla_bridge.get_backend, lowered._lowering.compile_args)


class PerDeviceProgram:
    """``program(carry, *rest) -> outputs``: every device runs its replica on its chains. Arguments
    and results as for the SPMD program: chain states (and every result) split by chain across
    the devices, the rest whole on every device (anything not yet there is copied to each, in one
    transfer). ``out_avals``: the replica's results (one device's share of the chains)."""

    def __init__(self, executable, devices: list, chains: int, kept: list, out_tree, out_avals=()):
        self.executable, self.devices, self.chains, self.kept, self.out_tree = executable, devices, chains, kept, out_tree
        mesh = jax.sharding.Mesh(np.array(devices), ("chains",))
        self.split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("chains"))
        self.whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.device_set = set(devices)
        self.handlers = _result_handlers(out_avals, chains, self.split)

    def _inputs(self, leaves: list) -> list:
        """The kept arguments, each with a piece on every device; those not placed so, copied."""
        kept = [leaves[i] for i in self.kept]
        move = [j for j, a in enumerate(kept) if not (isinstance(a, jax.Array) and a.sharding.device_set == self.device_set)]
        if move:
            for j, a in zip(move, jax.device_put([kept[j] for j in move], self.whole)):
                kept[j] = a
        return kept

    def __call__(self, *args):
        with _signals_deferred():
            results = self.executable.execute_sharded(self._inputs(jax.tree.leaves(args)))
            if self.handlers is not None:
                outs = results.consume_with_handlers(self.handlers)
            else:
                outs = [jax.make_array_from_single_device_arrays((self.chains,) + tuple(parts[0].shape[1:]),
                                                                 self.split, parts)
                        for parts in results.disassemble_into_single_device_arrays()]
            return jax.tree.unflatten(self.out_tree, outs)


@contextmanager
def _signals_deferred():
    """Ctrl-C and SIGTERM held back until the block is done, then handled as they would have been:
    a call of the program is one step, as a compiled JAX function's call (all C++) is. Without this
    a SIGTERM sometimes left chain states that could not be read back (``jax.device_get``: an
    IndexError; the Ctrl-C test failed 1 in 12-20 times on a loaded machine, and 0 in 42 with it).
    Only on the main thread, where
    Python runs signal handlers; handlers that are not Python functions are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held, caught = {}, []
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if callable(handler):
            held[sig] = signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            held[signum](signum, frame)


def _result_handlers(out_avals, chains: int, split):
    """JAX's own handlers turning the replicas' results into arrays split by chain (as a compiled
    JAX program's results are made); None where this JAX has none (results are then assembled with
    ``jax.make_array_from_single_device_arrays``, a little slower)."""
    try:
        from jax._src import core
        from jax._src.interpreters import pxla
        avals = [core.ShapedArray((chains,) + tuple(a.shape[1:]), a.dtype) for a in out_avals]
        if not avals:
            return None
        return pxla.global_avals_to_results_handler(avals, [split] * len(avals), True).handlers
    except Exception:  # noqa: BLE001 - another JAX: the public route
        return None
