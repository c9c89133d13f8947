"""The NUTS chunk (and the starting-point search's program) kept on disk as serialised programs
(ppl.inference.program_cache): a later fit
with the same model, data layout and settings reads it instead of tracing, and gets the same
draws; other data of the same shapes use the same program correctly; a damaged file is ignored;
the HMC and MH chunks are kept the same way; a program export refuses is marked, a program that
fails to trace raises its own error and marks nothing; a write that fails leaves nothing behind."""
import os

import jax
import numpy as np
import pytest

import ppl
from ppl.inference import chunks, nuts, program_cache

MODEL = """
data y: real[N]
data s: real[N]
mu ~ normal(0, 5)
tau ~ half_normal(5)
theta: real[N] ~ normal(mu, tau)
y ~ normal(theta, s)
"""
DATA_A = {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]), "s": np.array([15.0, 10, 16, 11, 9, 11, 10, 18])}
DATA_B = {"y": np.array([2.0, -8, 3, 17, 1, -1, 8, 2]), "s": np.array([5.0, 10, 6, 11, 9, 11, 10, 8])}
RUN = dict(chains=2, warmup=150, draws=50, seed=3)


@pytest.fixture
def programs(tmp_path, monkeypatch):
    """Programs stored under a fresh folder, and the in-process cache of compiled chunks empty, so
    every fit reaches the disk."""
    folder = tmp_path / "ppl-programs"
    monkeypatch.setattr(program_cache, "programs_dir", lambda: str(folder))
    nuts.clear_cache()
    chunks.clear_cache()
    yield folder
    nuts.clear_cache()
    chunks.clear_cache()


def _fit(data, **run):
    """A fit in a fresh model (nothing compiled in this process): its two programs, the NUTS chunk
    and the starting-point search, come from the disk or are traced and stored there."""
    nuts.clear_cache()
    chunks.clear_cache()
    post = ppl.compile(MODEL).sample(data, **{**RUN, **run})
    return np.asarray(post["theta"]), np.asarray(post.stats.get("n_leapfrog__", 0))


def test_a_stored_program_is_read_back_and_gives_the_same_draws(programs, monkeypatch):
    before = dict(program_cache.COUNTS)
    first = _fit(DATA_A)
    files = sorted(programs.glob("*.stablehlo"))
    assert len(files) == 2 and program_cache.COUNTS["stored"] == before["stored"] + 2
    again = _fit(DATA_A)
    assert program_cache.COUNTS["read"] == before["read"] + 2
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])

    # other data of the same shapes: the same file, and the draws of a fit that traced afresh
    from_disk = _fit(DATA_B)
    assert program_cache.COUNTS["read"] == before["read"] + 4 and len(list(programs.glob("*.stablehlo"))) == 2
    monkeypatch.setattr(program_cache, "programs_dir", lambda: None)     # no programs on disk: traced
    traced = _fit(DATA_B)
    np.testing.assert_array_equal(from_disk[0], traced[0])
    assert not np.array_equal(from_disk[0], first[0])


def test_settings_and_shapes_that_change_the_program_change_the_file(programs):
    _fit(DATA_A)
    _fit(DATA_A, max_depth=6)              # another chunk, the same starting-point search
    short = {k: v[:5] for k, v in DATA_A.items()}
    _fit(short)                            # both programs anew
    assert len(list(programs.glob("*.stablehlo"))) == 5


def test_a_damaged_file_is_ignored_and_replaced(programs):
    first = _fit(DATA_A)
    paths = sorted(programs.glob("*.stablehlo"))
    for path in paths:
        path.write_bytes(b"not a program")
    reads = program_cache.COUNTS["read"]
    again = _fit(DATA_A)
    assert program_cache.COUNTS["read"] == reads      # not read: traced afresh
    np.testing.assert_array_equal(first[0], again[0])
    assert len(paths) == 2 and all(os.path.getsize(path) > 1000 for path in paths)   # stored again


@pytest.mark.parametrize("algorithm", ["hmc", "mh"])
def test_hmc_and_mh_chunks_are_stored_and_read_back(programs, algorithm):
    before = dict(program_cache.COUNTS)
    first = _fit(DATA_A, algorithm=algorithm)[0]
    assert program_cache.COUNTS["stored"] == before["stored"] + 2      # the chunk and the search
    assert len(list(programs.glob("*.stablehlo"))) == 2
    again = _fit(DATA_A, algorithm=algorithm)[0]
    assert program_cache.COUNTS["read"] == before["read"] + 2
    np.testing.assert_array_equal(first, again)


def test_a_program_export_refuses_is_marked_and_a_failing_one_raises(programs):
    x = np.ones(3)
    # a host callback: jax.export refuses it, the plain lowering works
    callback = jax.jit(lambda v: jax.pure_callback(np.sin, jax.ShapeDtypeStruct(v.shape, v.dtype), v))
    lowered, hit = program_cache.lower_chunk(callback, (x,), "refused")
    assert not hit and lowered.compile()(x).shape == (3,)
    assert (programs / "refused.stablehlo.unsupported").exists()
    assert not (programs / "refused.stablehlo").exists()

    def broken(v):
        raise ZeroDivisionError("a bug in the program")

    with pytest.raises(ZeroDivisionError, match="a bug in the program"):
        program_cache.lower_chunk(jax.jit(broken), (x,), "broken")
    assert not (programs / "broken.stablehlo.unsupported").exists()


def test_a_write_that_fails_leaves_neither_the_file_nor_its_temporary(tmp_path, monkeypatch):
    path = str(tmp_path / "programs" / "k.jaxexport")
    assert program_cache._write(path, b"abc") and open(path, "rb").read() == b"abc"

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert not program_cache._write(path, b"new")
    assert open(path, "rb").read() == b"abc"   # the old program stays whole
    assert sorted(os.listdir(tmp_path / "programs")) == ["k.jaxexport"]


_FRESH_PROCESS = r"""
import sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from jax._src.export import _export
from ppl.inference import program_cache
program_cache.programs_dir = lambda: sys.argv[1]
hook = _export._ensure_backends_initialized
x = np.array([[4.0, 2.0], [2.0, 3.0]])
for _ in range(2):                      # stored, then read back from the file
    lowered, hit = program_cache.lower_chunk(jax.jit(lambda a: jnp.sin(a) * 2), (x,), "plain")
    np.testing.assert_allclose(lowered.compile()(x), np.sin(x) * 2)
assert hit and "scipy.linalg" not in sys.modules, "LAPACK readied for a program without it"
assert _export._ensure_backends_initialized is hook
for _ in range(2):
    lowered, hit = program_cache.lower_chunk(jax.jit(jnp.linalg.cholesky), (x,), "lapack")
    np.testing.assert_allclose(lowered.compile()(x), np.linalg.cholesky(x))
assert hit and _export._ensure_backends_initialized is hook
print("ok")
"""


def test_a_stored_program_without_lapack_does_not_import_scipy_and_one_with_it_still_runs(tmp_path):
    # jax.export readies LAPACK (importing scipy.linalg, 0.1 s) for any CPU program; ppl skips that
    # for programs that call none, and a program that does call it is lowered as JAX does
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "programs")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
