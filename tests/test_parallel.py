"""Where chains run (ppl.inference.parallel): one chain per host device by default on CPU, a vmap
of several per device when chains outnumber devices, and the same numbers either way."""
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (asks XLA for host devices before JAX starts)
from ppl.inference.parallel import chain_devices, outer_loops_apart, over_chains, small_loop_flag

N_DEV = len(jax.devices())
ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def _loop_over(x):
    # a while loop whose body reads 1 KiB and writes 1 KiB: above XLA's default small-loop threshold
    # (1 KiB), below ppl's (SMALL_LOOP_BYTES)
    return jax.lax.while_loop(lambda c: c[1] < 100, lambda c: (jnp.sin(c[0]) * 1.5 + 0.1, c[1] + 1),
                              (x, jnp.zeros((), jnp.int32)))[0]


@pytest.mark.skipif(jax.devices()[0].platform != "cpu", reason="an XLA CPU setting")
def test_small_loops_compile_as_one_function():
    # ppl raised XLA's small-while-loop threshold at import: such a loop becomes one compiled
    # function (a call marked xla_cpu_small_call) instead of operations dispatched one by one
    assert small_loop_flag() in os.environ.get("XLA_FLAGS", "")
    hlo = jax.jit(_loop_over).lower(jnp.ones(256, jnp.float32)).compile().as_text()
    assert "xla_cpu_small_call" in hlo


def _hoisted_loop_depths(hlo: str) -> list:
    # how deeply each while loop compiled as one function (xla_cpu_small_call) sits in the chunk,
    # from JAX's op names: row loop 1, passes 2, tree doublings 3, leapfrog steps 4, U-turn checks 5
    calls = re.findall(r'xla_cpu_small_call="true"}, metadata={op_name="([^"]*)"', hlo)
    return sorted({name.count("while") for name in calls if "threefry" not in name and "uniform" not in name})


@pytest.mark.skipif(jax.devices()[0].platform != "cpu", reason="an XLA CPU setting")
@pytest.mark.parametrize("n, apart", [(8, False), (2000, True)])
def test_nuts_loops_hoisted_whole_for_small_densities_and_leapfrog_loop_alone_for_larger(n, apart):
    from blackjax.mcmc import hmc

    from ppl.inference.adaptation import build_schedule, init_adaptation_state, pad_schedule
    from ppl.inference.nuts_step import NUTSChainState, make_nuts_chunk
    from ppl.inference.parallel import LARGE_DENSITY_OPS, density_ops

    y = jnp.linspace(-1.0, 1.0, n)

    def ld(x, data):   # a normal location-scale likelihood over n data
        return jnp.sum(-0.5 * ((data - x[0]) * jnp.exp(-x[1])) ** 2 - x[1]) - 0.5 * jnp.sum(x ** 2)

    ops = density_ops(jax.make_jaxpr(ld)(jnp.zeros(2), y))
    assert (ops > LARGE_DENSITY_OPS) == apart == outer_loops_apart(ops)
    state = NUTSChainState(hmc.init(jnp.zeros(2), lambda x: ld(x, y)),
                           jax.tree.map(lambda a: a[0], init_adaptation_state(1, 2, 1.0, False, np.float64)),
                           jax.random.key_data(jax.random.PRNGKey(0)))
    rows = pad_schedule(build_schedule(20, 0), 0, 20)
    chunk = make_nuts_chunk(ld, 10, False, loops_apart=apart)
    hlo = jax.jit(chunk).lower(state, rows, y, 0.8).compile().as_text()
    depths = _hoisted_loop_depths(hlo)
    # the leapfrog loop (4) is one function either way; around it, all (small) or none (larger)
    assert 4 in depths and (min(depths) == 4) == apart and (1 in depths) == (not apart)


def test_users_xla_backend_options_are_left_alone():
    mine = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1024"
    env = dict(os.environ, XLA_FLAGS=mine, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", "import os, ppl; print(os.environ['XLA_FLAGS'])"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    flags = out.stdout.split()
    assert mine in flags and not any(f.startswith(small_loop_flag()[:-3]) and f != mine for f in flags)
    assert any(f.startswith("--xla_force_host_platform_device_count=") for f in flags)


_LEAN = """
import sys, ppl
from ppl.inference import nuts                       # imports BlackJAX
lean = ("blackjax" in sys.modules and "scipy.fft" not in sys.modules and "scipy.fftpack" not in sys.modules
        and "optax" not in sys.modules)
import jax.numpy as jnp, blackjax.diagnostics as bd, blackjax.adaptation.chees_adaptation as chees
import scipy.fftpack
print(lean, type(sys.modules["scipy.fftpack"]).__name__, scipy.fftpack.next_fast_len is not bd.next_fast_len,
      [bd.next_fast_len(n) == scipy.fftpack.next_fast_len(n) for n in (7, 1001, 4097)])
import optax
print(type(sys.modules["optax"]).__name__, chees.optax.adam is optax.adam, chees.optax.OptState is optax.OptState,
      type(jnp.log(2.0)).__name__)
"""


def test_blackjax_is_imported_without_scipy_fft_or_optax_and_both_are_left_as_they_were():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _LEAN], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split("\n")
    # BlackJAX in without scipy.fft or optax; afterwards scipy.fftpack is SciPy's own module, and
    # BlackJAX's next_fast_len (the stand-in's) gives SciPy's answers
    assert lines[0] == "True module True [True, True, True]"
    # optax is optax's own module, BlackJAX's reference to it answers with optax's functions, and
    # jnp.log is JAX's again
    assert lines[1] == "module True True ArrayImpl"


# ------------------------------------------------------------------ compiling beside other work
def _std_normal(x, data):
    return -0.5 * jnp.sum((x - data["m"]) ** 2)


def test_starting_points_are_found_while_the_chunk_compiles(monkeypatch):
    import threading

    import ppl.inference.nuts as nuts_module
    from ppl.inference.nuts import NUTSConfig, sample_nuts
    from ppl.inference.parallel import DeferredInit
    from ppl.inference.rng import stream

    data = {"m": np.array([0.5, -1.0, 2.0])}
    init = np.array([[0.1, 0.2, 0.3], [-0.3, 0.0, 1.0]])
    config = NUTSConfig(chains=2, warmup=30, draws=20, chunk_size=25)
    calls = []

    def find():
        calls.append(threading.current_thread() is threading.main_thread())
        return init

    asked = []      # what the XLA options were chosen by: (data read per evaluation, the run's work)

    def spy(size, devices, work=None, quick=False):
        asked.append((size, work))
        return chosen(size, devices, work, quick=quick)

    chosen = nuts_module.compiler_options
    monkeypatch.setattr(nuts_module, "compiler_options", spy)
    logp = jax.jit(_std_normal)
    deferred = sample_nuts(logp, data, DeferredInit(init.shape, find), stream(3, 2), config)
    assert calls == [True]      # once, in the caller's thread (XLA compiled in another)
    assert deferred.compile_s > 0
    given = sample_nuts(logp, data, init, stream(3, 2), config)    # the same program, cached
    assert given.compile_s == 0
    np.testing.assert_array_equal(deferred.positions, given.positions)
    # the run's length reaches the choice; a longer run with the same options reuses the program
    longer = sample_nuts(logp, data, init, stream(3, 2), config._replace(draws=970))
    assert longer.compile_s == 0
    assert asked[0][0] == 3 and asked[0][1] > 0
    assert asked[1] == asked[0] and asked[2][1] == pytest.approx(asked[0][1] * 1000 / 50)

    def fail():
        raise ValueError("no starting point")

    with pytest.raises(ValueError, match="no starting point"):   # the search's error reaches the caller
        sample_nuts(logp, data, DeferredInit(init.shape, fail), stream(3, 2), config)


def test_the_run_work_counts_density_operations_iterations_and_chains_per_core():
    from ppl.inference.parallel import density_jaxpr, density_ops, density_profile, run_work

    def logp(x, data):      # a (40, 3) product, a 40-vector product and a sum over 40
        return jnp.sum(data["y"] * (data["X"] @ x))

    data = {"X": np.ones((40, 3)), "y": np.ones(40)}
    ops = density_ops(density_jaxpr(logp, 3, np.float64, data))
    assert 120 <= ops <= 200            # dominated by the 120-element matrix; not the 1000s of a loop
    bigger = {"X": np.ones((400, 3)), "y": np.ones(400)}
    assert density_ops(density_jaxpr(logp, 3, np.float64, bigger)) >= 9 * ops   # grows with the data

    def looped(x, data):    # a loop body counts once, as each branch of a cond does
        return jax.lax.fori_loop(0, 10, lambda i, s: s + jnp.sum(data["y"] * x[0]), 0.0)

    assert density_ops(density_jaxpr(looped, 3, np.float64, data)) >= 40

    def scanned(x, data):   # a recurrence over the 40 rows: its body counts 40 times
        return jax.lax.scan(lambda s, row: (s + jnp.sum(row * x), None), 0.0, data["X"])[0]

    short = {"X": np.ones((4, 3)), "y": np.ones(4)}
    assert density_ops(density_jaxpr(scanned, 3, np.float64, data)) == \
        10 * density_ops(density_jaxpr(scanned, 3, np.float64, short))
    profile = density_profile(logp, 3, np.float64, data)
    assert profile.data_size == 160 and profile.ops == ops
    assert density_profile(logp, 3, np.float64, {k: v + 1 for k, v in data.items()}) is profile  # same layout
    cpu = jax.devices("cpu")
    one, many = cpu[:1], (cpu * 4)[:4]
    assert run_work(ops, 2000, 4, one) == ops * 2000 * 4
    lanes = min(4, os.cpu_count() or 1)
    assert run_work(ops, 2000, 4, many) == ops * 2000 * max(1.0, 4 / lanes)
    assert run_work(None, 2000, 4, one) is None


_GC = """
import gc
was = gc.isenabled()
import ppl
after_import = gc.isenabled()
frozen_import = gc.get_freeze_count()
model = ppl.compile("mu ~ normal(0, 1)")
model.sample(chains=1, warmup=10, draws=10, seed=0)
after_fit = gc.isenabled()
frozen_fit = gc.get_freeze_count()
model.sample(chains=1, warmup=10, draws=10, seed=1)
frozen_again = gc.get_freeze_count()
gc.disable()
import importlib, sys
importlib.reload(sys.modules["ppl"])
print(was, after_import, after_fit, gc.isenabled())
print(frozen_import, frozen_fit, frozen_again, gc.get_freeze_count())
"""


@pytest.mark.parametrize("freeze", ["1", "0"])
def test_imports_pause_the_garbage_collector_and_leave_it_as_it_was(freeze):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PPL_GC_FREEZE=freeze)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", _GC], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    # on before and after `import ppl` and a first fit; a collector the user turned off stays off
    enabled, frozen = out.stdout.split("\n")[:2]
    assert enabled == "True True True False"
    at_import, at_fit, at_second_fit, after_reload = map(int, frozen.split())
    if freeze == "0":
        assert (at_import, at_fit, at_second_fit, after_reload) == (0, 0, 0, 0)
    else:
        # what `import ppl` and the samplers' first import allocated is frozen, out of every later
        # collection; a second fit imports nothing and freezes nothing; nor does a block under a
        # collector the user turned off
        assert at_import > 100_000 and at_fit > at_import
        assert at_second_fit == at_fit and after_reload <= at_fit
