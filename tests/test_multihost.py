"""Several hosts: ``ppl sample --coordinator`` joins a ``jax.distributed`` run (two processes on
this machine stand in for two hosts), each process samples its own chains on its own devices and
writes its own file, and ``ppl combine`` stacks the files into one posterior."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from ppl import Posterior, combine
from ppl.cli import main
from ppl.diagnostics import mcse_mean
from ppl.results import load

ROOT = Path(__file__).resolve().parents[1]

MODEL = "data y: real[N]\nmu ~ normal(0, 5)\ny ~ normal(mu, 1)\n"
Y = np.arange(10.0)
# conjugate normal: precision 1/25 + N, mean sum(y) / precision
POST_SD = 1 / math.sqrt(1 / 25 + len(Y))
POST_MEAN = Y.sum() * POST_SD ** 2


def _run(n_chains, n_draws, seed, value=0.0, stats=True):
    rng = np.random.default_rng(seed)
    draws = {"mu": rng.normal(value, 1.0, (n_chains, n_draws)), "theta": rng.normal(size=(n_chains, n_draws, 3))}
    st = {"lp__": rng.normal(size=(n_chains, n_draws))} if stats else {}
    return Posterior(draws, st)


def test_combine_stacks_chains_in_order():
    a, b = _run(2, 50, 0), _run(3, 50, 1, stats=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # distinct chains: nothing to warn about
        both = combine([a, b])
    assert both.num_chains == 5 and both.num_draws == 50
    np.testing.assert_array_equal(both["mu"][:2], a["mu"])
    np.testing.assert_array_equal(both["theta"][2:], b["theta"])
    assert "lp__" not in both.stats          # only one run recorded it
    assert both.meta["combined_runs"] == 2


@pytest.mark.parametrize("other, message", [
    (lambda: _run(2, 40, 1), "40 draws per chain but a.json has 50"),
    (lambda: Posterior({"mu": np.zeros((2, 50))}), "has variables mu but a.json has mu, theta"),
    (lambda: Posterior({"mu": np.zeros((2, 50)), "theta": np.zeros((2, 50, 4))}), "shape [4] in b.json but [3]"),
    (lambda: Posterior(_run(2, 50, 1).draws, kind="prior"), "holds prior draws"),
])
def test_combine_says_why_runs_do_not_fit(other, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        combine([_run(2, 50, 0), other()], names=["a.json", "b.json"])


def test_combine_command_reports_a_missing_file(tmp_path, capsys):
    _run(2, 50, 0).save(tmp_path / "a.json")
    assert main(["combine", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_coordinator_needs_its_companions(tmp_path, capsys):
    (tmp_path / "m.gm").write_text(MODEL)
    assert main(["sample", str(tmp_path / "m.gm"), "--coordinator", "localhost:1"]) == 2
    assert "--num-processes and --process-id go together" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_sample_their_own_chains_and_combine(tmp_path):
    (tmp_path / "m.gm").write_text(MODEL)
    (tmp_path / "d.json").write_text(json.dumps({"y": Y.tolist()}))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    port = _free_port()
    cmd = [sys.executable, "-m", "ppl.cli", "sample", "m.gm", "-d", "d.json", "--chains", "2", "--warmup", "500",
           "--draws", "500", "-q", "--coordinator", f"localhost:{port}", "--num-processes", "2", "-o", "out.json"]
    procs = [subprocess.Popen(cmd + ["--process-id", str(i)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "2 chains on 2 devices" in err        # each process uses its own two devices only
    runs = [load(tmp_path / f"out.process{i}.json") for i in range(2)]
    # the same --seed on both hosts: the process index makes their chains independent, not copies
    assert not np.allclose(runs[0]["mu"], runs[1]["mu"])
    assert main(["combine", str(tmp_path / "out.process0.json"), str(tmp_path / "out.process1.json"),
                 "-o", str(tmp_path / "all.json")]) == 0
    both = load(tmp_path / "all.json")
    assert both.num_chains == 4 and both.num_draws == 500
    mu = both["mu"]
    assert abs(mu.mean() - POST_MEAN) < 4 * mcse_mean(mu) + 0.01
    assert abs(mu.std() / POST_SD - 1) < 0.15


def test_distributed_outside_a_cluster_says_what_to_give(tmp_path):
    # (a separate process: jax.distributed's state is process-wide)
    (tmp_path / "m.gm").write_text(MODEL)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for k in [k for k in env if k.startswith(("SLURM_", "OMPI_", "PMI_"))]:
        del env[k]
    out = subprocess.run([sys.executable, "-m", "ppl.cli", "sample", "m.gm", "--distributed", "-q"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "could not join the distributed run" in out.stderr and "--coordinator HOST:PORT" in out.stderr


def test_combine_warns_when_a_chain_repeats():
    from ppl.model import ModelWarning

    a = _run(2, 50, 0)
    with pytest.warns(ModelWarning, match="chain 1 of b.json repeats chain 1 of a.json"):
        combine([a, a], names=["a.json", "b.json"])
