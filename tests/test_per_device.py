"""Chains across host devices as replicas of one compiled program (ppl.inference.per_device):
the same numbers as one SPMD program across the devices, chain by chain, and results placed as
that program placed them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (asks XLA for host devices before JAX starts)
from ppl.inference.parallel import chain_devices, compile_lowered, lower_over_chains, place
from ppl.inference.per_device import PerDeviceProgram

pytestmark = pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 host devices")


def _one_chain(state, rows, data, scale):
    # a loop whose length depends on the chain's state (as a NUTS tree's does), data read whole
    def body(c):
        x, n = c
        return x * scale + jnp.sum(data["w"]) * 1e-3 + rows[0], n + 1

    x, n = jax.lax.while_loop(lambda c: c[0] < 50.0, body, (state["x"], jnp.zeros((), jnp.int32)))
    return {"x": x, "n": n}, {"steps": n, "trace": jnp.stack([x, x * 2.0])}


def _run(chains: int, monkeypatch, per_device: str):
    monkeypatch.setenv("PPL_PER_DEVICE", per_device)
    devices = chain_devices(chains)
    carry = {"x": np.linspace(0.5, 3.0, chains), "n": np.zeros(chains, np.int32)}
    data = {"w": np.arange(5.0)}
    carry, data = place(carry, data, devices)
    rows = np.array([0.25, 0.0])
    lowered = lower_over_chains(_one_chain, carry, rows, data, 1.7, devices)
    compiled, _ = compile_lowered(lowered)
    return compiled, compiled(carry, rows, data, 1.7), devices


@pytest.mark.parametrize("chains", [4, 8])
def test_replicas_compute_what_one_spmd_program_computes_chain_by_chain(chains, monkeypatch):
    replicas, got, devices = _run(chains, monkeypatch, "1")
    spmd, expected, _ = _run(chains, monkeypatch, "0")
    assert isinstance(replicas, PerDeviceProgram) and not isinstance(spmd, PerDeviceProgram)
    assert replicas.handlers is not None     # JAX's own result handlers, not the slower public route
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # each chain ran its own loop: different chains took different numbers of steps
    assert len(set(np.asarray(got[1]["steps"]).tolist())) > 1
    # results split by chain across the devices, as the SPMD program's are, so the next chunk
    # takes them as they are
    for leaf in jax.tree.leaves(got):
        assert leaf.shape[0] == chains
        assert leaf.sharding.device_set == set(devices)
        assert [s.data.shape[0] for s in leaf.addressable_shards] == [chains // len(devices)] * len(devices)
    again = replicas(got[0], np.array([0.25, 0.0]), place({"x": np.zeros(chains)}, {"w": np.arange(5.0)}, devices)[1],
                     1.7)
    assert np.all(np.asarray(again[1]["steps"]) == 0)   # x >= 50 already: no step


def test_a_jax_without_the_replicas_hooks_falls_back_to_the_spmd_program(monkeypatch):
    from ppl.inference import per_device

    def missing(lowered):
        raise AttributeError("module 'jax._src.compiler' has no attribute 'compile_or_get_cached'")

    monkeypatch.setattr(per_device, "_hooks", missing)
    compiled, got, _ = _run(4, monkeypatch, "1")
    assert not isinstance(compiled, PerDeviceProgram)
    monkeypatch.undo()
    _, expected, _ = _run(4, monkeypatch, "0")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_nuts_runs_on_the_replicas_and_agrees_with_the_spmd_program(monkeypatch):
    model = ppl.compile("mu ~ normal(0, 5)\ntheta: real[3] ~ normal(mu, 1)\ny ~ normal(theta, 1)\n"
                        "data y: real[3]\n")
    data = {"y": [0.5, -1.0, 2.0]}
    from ppl.inference import nuts
    draws = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("PPL_PER_DEVICE", flag)
        nuts.clear_cache()
        post = model.sample(data, chains=4, warmup=100, draws=100, seed=3)
        draws[flag] = np.asarray(post.draws["theta"])
    # the same draws up to rounding: XLA orders a few operations differently in the two programs
    np.testing.assert_allclose(draws["1"], draws["0"], atol=1e-8)


def test_the_replicas_compile_is_reported_as_jax_reports_its_own(monkeypatch):
    # the benchmark harness (and anyone timing with jax.monitoring) sums JAX's backend-compile events
    from jax import monitoring
    seen = []
    monitoring.register_event_duration_secs_listener(
        lambda event, duration, **_: seen.append(duration) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    before = len(seen)
    compiled, _, _ = _run(4, monkeypatch, "1")
    assert isinstance(compiled, PerDeviceProgram)
    assert len(seen) > before and all(d > 0 for d in seen[before:])
