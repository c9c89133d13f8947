import csv
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import numpy as np
import pytest

from ppl import results as R
from ppl.results import STAT_NAMES, Posterior, Summary, load

C, N = 4, 200


def make_posterior(completed=True, seed=0, kind="posterior", with_stats=True):
    rng = np.random.default_rng(seed)
    draws = {
        "mu": rng.standard_normal((C, N)),
        "theta": rng.standard_normal((C, N, 3)) * 1e-7 + 0.1,   # awkward decimals
        "Sigma": rng.standard_normal((C, N, 2, 3)),
        "k": rng.poisson(4.0, size=(C, N, 2)),                   # int node
    }
    draws["mu"][0, 0] = 0.1 + 0.2          # 0.30000000000000004 must survive
    draws["mu"][1, 1] = -0.0
    draws["Sigma"][2, 3, 1, 2] = 1e-300
    stats = {}
    if with_stats:
        div = np.zeros((C, N), dtype=bool)
        div[0, 5] = div[2, 7] = div[2, 9] = True
        stats = {
            "lp__": rng.standard_normal((C, N)) - 10,
            "accept_stat__": rng.uniform(size=(C, N)),
            "stepsize__": np.full((C, N), 0.3),
            "treedepth__": rng.integers(1, 5, size=(C, N)),
            "n_leapfrog__": rng.integers(1, 31, size=(C, N)),
            "divergent__": div,
            "energy__": rng.standard_normal((C, N)) + 12,
        }
    return Posterior(draws=draws, stats=stats, kind=kind, completed=completed,
                     timings={"warmup_s": 1.25, "sampling_s": 2.5},
                     meta={"dims": {"theta": ("school",), "Sigma": ("row", "col")},
                           "algorithm": "nuts", "seed": np.int64(42)})


def assert_same(a: Posterior, b: Posterior):
    assert list(a.draws) == list(b.draws)
    for name in a.draws:
        assert a[name].shape == b[name].shape, name
        assert a[name].dtype.kind == b[name].dtype.kind, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert np.array_equal(np.signbit(a[name]), np.signbit(b[name])), name
    assert set(a.stats) == set(b.stats)
    for name in a.stats:
        np.testing.assert_array_equal(a.stats[name], b.stats[name], err_msg=name)
    assert (a.kind, a.completed, a.timings) == (b.kind, b.completed, b.timings)
    assert b.meta["dims"] == {"theta": ("school",), "Sigma": ("row", "col")}
    assert b.meta["seed"] == 42 and b.meta["algorithm"] == "nuts"


# ------------------------------------------------------------------ basic object
def test_shape_properties_and_divergences():
    post = make_posterior()
    assert (post.num_chains, post.num_draws) == (C, N)
    assert post.keys() == ["mu", "theta", "Sigma", "k"] == list(post)
    assert "theta" in post and "lp__" in post and "nope" not in post
    assert post.divergences == 3
    np.testing.assert_array_equal(post.divergences_per_chain, [1, 0, 2, 0])
    empty = Posterior(draws={"x": np.zeros((2, 5))}, stats={}, kind="prior")
    assert empty.divergences == 0
    np.testing.assert_array_equal(empty.divergences_per_chain, [0, 0])
    assert "Posterior(kind='posterior', chains=4, draws=200" in repr(post)


def test_keyerror_suggests_names():
    post = make_posterior()
    with pytest.raises(KeyError) as info:
        post["thetaa"]
    msg = str(info.value)
    assert "did you mean 'theta'" in msg
    assert "mu, theta, Sigma, k" in msg
    with pytest.raises(KeyError, match="no variable named 'zzz'"):
        post["zzz"]


def test_inconsistent_shapes_rejected():
    with pytest.raises(ValueError, match="chains, draws"):
        Posterior(draws={"a": np.zeros((2, 10)), "b": np.zeros((2, 11))}, stats={})
    with pytest.raises(ValueError):
        Posterior(draws={"a": np.zeros(10)}, stats={})


def test_flat_columns_names_and_values():
    post = make_posterior()
    names, arr = post.flat_columns()
    assert names == ["mu", "theta[0]", "theta[1]", "theta[2]",
                     "Sigma[0,0]", "Sigma[0,1]", "Sigma[0,2]",
                     "Sigma[1,0]", "Sigma[1,1]", "Sigma[1,2]", "k[0]", "k[1]"]
    assert arr.shape == (C * N, len(names))
    np.testing.assert_array_equal(arr[:, names.index("Sigma[1,2]")],
                                  post["Sigma"][:, :, 1, 2].reshape(-1))
    np.testing.assert_array_equal(arr[N:2 * N, names.index("k[1]")], post["k"][1, :, 1])
    assert R.parse_column("Sigma[1,2]") == ("Sigma", (1, 2))
    assert R.parse_column("mu") == ("mu", ())
    assert R.column_names("z", (2,)) == ["z[0]", "z[1]"]


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("ext", [".csv", ".json"])
@pytest.mark.parametrize("completed", [True, False])
def test_round_trip_exact(tmp_path, ext, completed):
    post = make_posterior(completed=completed)
    path = tmp_path / f"fit{ext}"
    post.save(path)
    back = load(path)
    assert_same(post, back)
    assert str(back.summary()) == str(post.summary())
    assert back.divergences == 3
    assert sorted(os.listdir(tmp_path)) == [f"fit{ext}"]   # no temp files left


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_round_trip_without_stats_and_special_values(tmp_path, ext):
    post = make_posterior(kind="prior", with_stats=False)
    post.draws["mu"][3, 4] = np.nan
    post.draws["mu"][3, 5] = -np.inf
    post.draws["empty"] = np.zeros((C, N, 0))
    path = tmp_path / f"prior{ext}"
    post.save(str(path))
    back = load(str(path))
    assert back.kind == "prior" and back.stats == {}
    assert list(back.draws) == list(post.draws)
    np.testing.assert_array_equal(back["mu"], post["mu"])
    assert back["empty"].shape == (C, N, 0)
    assert "divergent" not in str(back.summary())


@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_zero_draw_interrupted_run_round_trips(tmp_path, ext):
    post = Posterior(draws={"mu": np.zeros((2, 0)), "k": np.zeros((2, 0, 3), dtype=np.int64)},
                     stats={"lp__": np.zeros((2, 0))}, completed=False)
    path = tmp_path / f"x{ext}"
    post.save(path)
    back = load(path)
    assert (back.num_chains, back.num_draws, back.completed) == (2, 0, False)
    assert back["k"].shape == (2, 0, 3) and back["k"].dtype.kind == "i"
    text = str(back.summary())
    assert "(incomplete: interrupted after 0 draws)" in text


def test_json_keeps_float32_dtype(tmp_path):
    post = Posterior(draws={"x": np.random.default_rng(1).standard_normal((2, 10)).astype(np.float32)},
                     stats={})
    post.to_json(tmp_path / "f.json")
    back = load(tmp_path / "f.json")
    assert back["x"].dtype == np.float32
    np.testing.assert_array_equal(back["x"], post["x"])
    post.to_csv(tmp_path / "f.csv")     # CSV reads floats back as float64, same values
    np.testing.assert_array_equal(load(tmp_path / "f.csv")["x"], post["x"])


def test_csv_layout(tmp_path):
    post = make_posterior(completed=False)
    path = tmp_path / "fit.csv"
    post.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ppl kind=posterior completed=false")
    header_line = next(ln for ln in lines if not ln.startswith("#"))
    header = next(csv.reader([header_line]))
    assert header[:2] == ["chain", "draw"]
    assert header[2:9] == list(STAT_NAMES)
    assert header[9:] == post.flat_columns()[0]
    data = list(csv.reader(lines[lines.index(header_line) + 1:]))
    assert len(data) == C * N
    row = dict(zip(header, data[0]))
    assert (row["chain"], row["draw"]) == ("0", "0")
    assert row["mu"] == "0.30000000000000004"
    for name in ("treedepth__", "n_leapfrog__", "divergent__", "k[0]"):
        assert row[name].lstrip("-").isdigit(), (name, row[name])
    assert dict(zip(header, data[N + 1]))["mu"] == "-0.0"   # chain 1, draw 1


def test_csv_float_stats_written_as_ints(tmp_path):
    post = Posterior(draws={"x": np.zeros((1, 3))},
                     stats={"treedepth__": np.array([[1.0, 2.0, 3.0]]),
                            "lp__": np.array([[1.0, 2.0, 3.0]])})
    post.to_csv(tmp_path / "a.csv")
    text = (tmp_path / "a.csv").read_text().splitlines()
    assert text[-1] == "0,2,3.0,3,0.0"   # chain,draw,lp__,treedepth__,x
    assert load(tmp_path / "a.csv").stats["treedepth__"].dtype.kind == "i"


def test_truncated_csv_is_rejected(tmp_path):
    path = tmp_path / "fit.csv"
    make_posterior().to_csv(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])               # cut in the middle of a row
    with pytest.raises(ValueError, match="truncated"):
        load(path)
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:-3]))                  # whole rows missing
    with pytest.raises(ValueError, match="800 rows"):
        load(path)


def test_bad_extension(tmp_path):
    post = make_posterior()
    for bad in ("fit.txt", "fit"):
        with pytest.raises(ValueError, match=r"\.csv or \.json"):
            post.save(tmp_path / bad)
        with pytest.raises(ValueError, match=r"\.csv or \.json"):
            load(tmp_path / bad)
    assert os.listdir(tmp_path) == []


def test_not_a_ppl_json(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a ppl JSON"):
        load(tmp_path / "a.json")


# ------------------------------------------------------------------ atomic writes
@pytest.mark.parametrize("ext", [".csv", ".json"])
def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, ext):
    path = tmp_path / f"fit{ext}"
    old = make_posterior(seed=1)
    old.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(R.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        make_posterior(seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_crash_mid_stream_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "fit.csv"
    make_posterior(seed=1).to_csv(path)
    before = path.read_bytes()
    real = R._csv_lines

    def crashing(post):
        gen = real(post)
        for _ in range(4):
            yield next(gen)
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "_csv_lines", crashing)
    with pytest.raises(KeyboardInterrupt):
        make_posterior(seed=2).to_csv(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["fit.csv"]


# ------------------------------------------------------------------ summary
def test_summary_text():
    post = make_posterior()
    s = post.summary()
    assert isinstance(s, Summary)
    assert [r["name"] for r in s.rows] == post.flat_columns()[0]
    text = str(s)
    lines = text.splitlines()
    assert lines[0] == "posterior: 4 chains x 200 draws"
    assert lines[1].split() == ["name", "mean", "sd", "5%", "50%", "95%",
                                "ess_bulk", "ess_tail", "r_hat"]
    assert lines[-1] == "3 divergent transitions"
    assert "incomplete" not in text
    row = s["Sigma[1,2]"]
    x = post["Sigma"][:, :, 1, 2]
    assert row["mean"] == pytest.approx(x.mean())
    assert row["q95"] == pytest.approx(np.quantile(x, 0.95))
    assert set(row) == {"name", "mean", "sd", "q5", "q50", "q95", "mcse_mean",
                        "ess_bulk", "ess_tail", "r_hat"}
    k_line = next(ln for ln in lines if ln.startswith("k[0]"))
    assert f"{post['k'][..., 0].mean():.4g}" in k_line


def test_summary_columns_aligned():
    lines = str(make_posterior().summary()).splitlines()[1:-1]
    ends = {len(ln) for ln in lines}
    assert len(ends) == 1   # right-aligned fixed-width: every table line equally long


def test_summary_selection():
    post = make_posterior()
    assert [r["name"] for r in post.summary(["theta"]).rows] == ["theta[0]", "theta[1]", "theta[2]"]
    assert [r["name"] for r in post.summary("Sigma[1,0]").rows] == ["Sigma[1,0]"]
    assert [r["name"] for r in post.summary(["lp__", "mu"]).rows] == ["lp__", "mu"]
    with pytest.raises(KeyError, match="did you mean 'Sigma'"):
        post.summary(["Sigmaa"])
    with pytest.raises(KeyError):
        post.summary(["theta[7]"])
    with pytest.raises(KeyError, match="did you mean"):
        post.summary()["theta[9]"]


def test_summary_incomplete_and_no_stats_lines():
    text = str(make_posterior(completed=False, with_stats=False, kind="vi").summary())
    assert text.splitlines()[0].startswith("vi: 4 chains")
    assert "divergent" not in text
    assert text.splitlines()[-1] == "(incomplete: interrupted after 200 draws)"
    one = make_posterior()
    one.stats["divergent__"][:] = False
    one.stats["divergent__"][0, 0] = True
    assert "1 divergent transition" in str(one.summary()).splitlines()[-1]


def test_to_rich_has_same_content():
    from rich.console import Console
    post = make_posterior(completed=False)
    table = post.summary().to_rich()
    assert [c.header for c in table.columns] == ["name", "mean", "sd", "5%", "50%", "95%",
                                                 "ess_bulk", "ess_tail", "r_hat"]
    assert table.row_count == 12
    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(table)
    out = console.export_text()
    assert "Sigma[1,2]" in out and "3 divergent transitions" in out
    assert "(incomplete: interrupted after 200 draws)" in out


def test_warnings_good_posterior_is_quiet():
    rng = np.random.default_rng(3)
    post = Posterior(draws={"x": rng.standard_normal((4, 1000))},
                     stats={"divergent__": np.zeros((4, 1000), dtype=int)})
    assert post.summary().warnings() == []


def test_warnings_report_problems():
    rng = np.random.default_rng(4)
    bad = rng.standard_normal((4, 1000)) + np.array([0, 0, 0, 3.0])[:, None]
    sticky = np.cumsum(rng.standard_normal((4, 1000)), axis=1) * 0.01
    div = np.zeros((4, 1000), dtype=int)
    div[1, :7] = 1
    post = Posterior(draws={"bad": bad, "sticky": sticky}, stats={"divergent__": div},
                     completed=False)
    w = post.summary().warnings()
    text = "\n".join(w)
    assert any(m.startswith("r_hat > 1.01 for bad") and "chains have not mixed" in m for m in w)
    assert any(m.startswith("ess_bulk < 400 for") and "sticky" in m for m in w)
    assert any(m.startswith("7 divergent transitions after warm-up (chain 1: 7)")
               and "reparameterise (non-centred) or raise target_accept" in m for m in w)
    assert "interrupted after 1000 draws" in text
