"""Where chains run (ppl.inference.parallel): one chain per host device by default on CPU, a vmap
of several per device when chains outnumber devices, and the same numbers either way."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (asks XLA for host devices before JAX starts)
from ppl.inference.parallel import chain_devices, over_chains

N_DEV = len(jax.devices())


def test_ppl_asked_for_host_devices():
    # ppl was imported before JAX started its backend, so there is one device per core, at least 4
    assert jax.devices()[0].platform != "cpu" or N_DEV >= 4


@pytest.mark.skipif(N_DEV < 4, reason="needs 4 host devices")
def test_chain_devices_divide_the_chains_evenly():
    assert len(chain_devices(4)) == 4
    assert len(chain_devices(1)) == 1
    assert len(chain_devices(6)) in (3, 6)  # the most devices that divide 6 chains
    assert 8 % len(chain_devices(8)) == 0
    assert len(chain_devices(4, requested=2)) == 2
    with pytest.raises(ValueError, match="evenly"):
        chain_devices(4, requested=3)
    with pytest.raises(ValueError, match="PPL_HOST_DEVICES"):
        chain_devices(4, requested=N_DEV + 1)


def _one_chain(state, scale):
    # a loop whose length depends on the chain's state, as a NUTS tree does
    def body(c):
        x, n = c
        return x * scale + 1.0, n + 1

    x, n = jax.lax.while_loop(lambda c: c[0] < 50.0, body, (state, jnp.zeros((), jnp.int32)))
    return x, n


@pytest.mark.parametrize("chains", [1, 4, 8])
def test_split_chains_compute_what_vmap_computes(chains):
    states = jnp.linspace(0.5, 3.0, chains)
    scale = jnp.asarray(1.7)
    expected = jax.vmap(_one_chain, in_axes=(0, None))(states, scale)
    devices = chain_devices(chains)
    got = jax.jit(over_chains(_one_chain, chains, devices))(states, scale)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(expected[0]), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(expected[1]))
