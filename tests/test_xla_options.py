"""XLA's compile options for ppl's programs (ppl.inference.xla_options): the emitters chosen by the
data and the run's length, reductions left to XLA rather than YNNPACK, sums as written in float64,
the parts XLA compiles a program in, options an installed XLA does not know, and the user's own PPL_XLA_OPTIONS."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl  # noqa: F401  (float64, and host devices before JAX starts)
from ppl.inference import xla_options
from ppl.inference.parallel import density_data_size
from ppl.inference.xla_options import (LONG_RUN, PLAIN_SUMS, SMALL_DATA, YNN_FUSIONS_OFF, codegen_parts,
                                       compile_with, compiler_options)
from ppl.numerics import log1p_exp

CPU = jax.devices("cpu")
PARTS = codegen_parts()


@pytest.fixture
def no_user_options(monkeypatch):
    for name in ("PPL_FUSION_EMITTERS", "PPL_XLA_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XLA_FLAGS", re.sub(r"--xla_disable_hlo_passes=\S+", "", os.environ.get("XLA_FLAGS", "")))


def test_float64_programs_sum_as_written_without_the_fusion_emitters(monkeypatch, no_user_options):
    off = {"xla_cpu_use_fusion_emitters": False, **YNN_FUSIONS_OFF, **PARTS, **PLAIN_SUMS}  # ppl's default precision
    for size, work in [(1, None), (SMALL_DATA + 1, None), (10 ** 6, LONG_RUN * 10)]:
        assert compiler_options(size, CPU, work) == off
    assert compiler_options(1, CPU, quick=True) == {**off, "xla_backend_optimization_level": 0}
    monkeypatch.setenv("PPL_FUSION_EMITTERS", "1")
    assert compiler_options(1, CPU) == {**YNN_FUSIONS_OFF, **PARTS, **PLAIN_SUMS}


def test_float32_fusion_emitters_follow_the_data_one_evaluation_reads(monkeypatch, no_user_options):
    monkeypatch.setattr(xla_options, "_float64", lambda: False)
    off, on = {"xla_cpu_use_fusion_emitters": False, **YNN_FUSIONS_OFF, **PARTS}, {**YNN_FUSIONS_OFF, **PARTS}
    assert compiler_options(SMALL_DATA, CPU) == off
    assert compiler_options(SMALL_DATA + 1, CPU) == on
    # with the run's work known: a short run keeps them off whatever the data, a long one has them
    assert compiler_options(SMALL_DATA + 1, CPU, work=LONG_RUN / 2) == off
    assert compiler_options(SMALL_DATA + 1, CPU, work=LONG_RUN) == on
    assert compiler_options(SMALL_DATA, CPU, work=LONG_RUN) == off
    monkeypatch.setenv("PPL_FUSION_EMITTERS", "1")
    assert compiler_options(1, CPU) == on
    assert compiler_options(1, CPU, work=1.0) == on
    monkeypatch.setenv("PPL_FUSION_EMITTERS", "0")
    assert compiler_options(10 ** 6, CPU, work=LONG_RUN * 10) == off


def test_programs_compile_in_twice_as_many_parts_as_cores_at_most_xlas_32(monkeypatch, no_user_options):
    key = "xla_cpu_parallel_codegen_split_count"
    for cores, parts in [(1, 2), (2, 4), (6, 12), (16, 32), (64, 32)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert codegen_parts() == {key: parts}
        assert compiler_options(1, CPU)[key] == parts
    # this XLA knows the option (compile_with would drop it silently otherwise)
    lowered, x = softplus_sum()
    compile_with(lowered, codegen_parts())
    assert key not in xla_options._UNKNOWN_OPTIONS


def test_the_data_one_evaluation_reads():
    def logp(x, data):      # reads X and y; `unused` only another program would need
        return jnp.sum(data["y"] * (data["X"] @ x))

    data = {"X": np.ones((40, 3)), "y": np.ones(40), "unused": np.ones(1000)}
    assert density_data_size(logp, 3, np.float64, data) == 160
    assert density_data_size(jax.jit(logp), 3, np.float64, data) == 160


def softplus_sum():
    """value and gradient of a 5,000-term sum of ppl's log1p_exp, lowered (not compiled)"""
    x = jnp.linspace(-3.0, 3.0, 5000)
    return jax.jit(jax.value_and_grad(lambda m, x: jnp.sum(log1p_exp(x - m)))).lower(0.5, x), x


def test_reductions_are_left_to_xla_not_ynnpack(no_user_options):
    """A sum of softplus terms (ppl's log1p_exp) compiled with ppl's options holds no YNNPACK fusion
    (3x slower there: xla_options.YNN_FUSIONS_OFF); without them this jaxlib makes one."""
    lowered, x = softplus_sum()
    if "__ynn_fusion" not in lowered.compile().as_text():
        pytest.skip("this jaxlib makes no YNNPACK fusions here")
    assert "__ynn_fusion" not in compile_with(lowered, compiler_options(x.size, CPU)).as_text()


def test_long_sums_are_one_loop_in_float64(no_user_options):
    """XLA's tree of partial sums (a reduce-window) is left out under ppl's float64 options
    (xla_options.PLAIN_SUMS): the sum is one reduction, the value and gradient the same."""
    lowered, x = softplus_sum()
    options = compiler_options(x.size, CPU)
    assert options["xla_disable_hlo_passes"] == "tree_reduction_rewriter"
    tree = compile_with(lowered, {k: v for k, v in options.items() if k != "xla_disable_hlo_passes"})
    if "reduce-window" not in tree.as_text():
        pytest.skip("this jaxlib makes no tree of partial sums here")
    plain = compile_with(lowered, options)
    assert "reduce-window" not in plain.as_text()
    (v0, g0), (v1, g1) = tree(0.5, x), plain(0.5, x)
    exact = float(np.sum(np.logaddexp(0.0, np.asarray(x) - 0.5)))
    assert abs(float(v1) - exact) <= 1e-12 * abs(exact) and abs(float(v0) - exact) <= 1e-12 * abs(exact)
    assert abs(float(g1) - float(g0)) <= 1e-12 * abs(float(g0))


def test_an_option_this_xla_does_not_know_is_left_out(monkeypatch):
    monkeypatch.setattr(xla_options, "_UNKNOWN_OPTIONS", set())
    lowered = jax.jit(lambda x: jnp.sum(x * x)).lower(jnp.ones(3))
    compiled = compile_with(lowered, {"xla_cpu_no_such_option_anywhere": True, **YNN_FUSIONS_OFF})
    assert float(compiled(jnp.ones(3))) == 3.0
    assert xla_options._UNKNOWN_OPTIONS == {"xla_cpu_no_such_option_anywhere"}
    with pytest.raises(Exception, match="No such compile option"):    # plain XLA refuses it
        lowered.compile({"xla_cpu_no_such_option_anywhere": True})


def test_ppl_xla_options_are_added_last_and_passes_joined(monkeypatch, no_user_options):
    monkeypatch.setenv("PPL_XLA_OPTIONS", '{"xla_cpu_use_fusion_emitters": true, "xla_disable_hlo_passes": "cse"}')
    monkeypatch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"] + " --xla_disable_hlo_passes=dce")
    options = compiler_options(SMALL_DATA, CPU)      # ppl would turn the emitters off here
    assert options["xla_cpu_use_fusion_emitters"] is True
    assert options["xla_disable_hlo_passes"] == "dce,tree_reduction_rewriter,cse"
    assert options["xla_cpu_experimental_ynn_fusion_type"] == ""
    # and XLA takes the joined list (a sum still compiles and is right)
    lowered, x = softplus_sum()
    assert np.isfinite(float(compile_with(lowered, options)(0.5, x)[0]))


@pytest.mark.parametrize("text, says", [("{xla: 1}", "is not valid JSON"), ('["a"]', "must be a JSON object"),
                                        ('{"a": [1]}', "must be a JSON object")])
def test_a_bad_ppl_xla_options_says_what_to_write(monkeypatch, text, says):
    monkeypatch.setenv("PPL_XLA_OPTIONS", text)
    with pytest.raises(ValueError, match=re.escape(says)) as err:
        compiler_options(1, CPU)
    assert "PPL_XLA_OPTIONS='{" in str(err.value)


def test_the_cli_reports_a_bad_ppl_xla_options_without_a_traceback(monkeypatch, tmp_path, capsys):
    from ppl.cli import main

    model = tmp_path / "m.gm"
    model.write_text("mu ~ normal(0, 1)\n")
    monkeypatch.setenv("PPL_XLA_OPTIONS", "{oops")
    assert main(["sample", str(model), "--chains", "1", "--warmup", "10", "--draws", "10", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ppl: error: PPL_XLA_OPTIONS is not valid JSON" in err and "Traceback" not in err
