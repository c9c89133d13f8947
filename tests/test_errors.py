"""Every class of user error: exit status 2, `file:line:col: error: message`, the source line
with a caret, a hint where one exists, and never a traceback."""
import json
import math
import os
import subprocess
import sys

import pytest

from ppl.cli import main

# (id, model source, data or None, expected "line:col", expected message fragment, expected hint fragment)
CASES = [
    ("undefined-name", "mu ~ normal(0, 1)\ny ~ normal(mu, sigmaa)\ndata sigma: real", {"y": 1, "sigma": 1},
     "2:16", "`sigmaa` is not defined", "did you mean `sigma`?"),
    ("duplicate", "mu ~ normal(0, 1)\nmu ~ normal(0, 2)", None, "2:1", "`mu` is defined twice (first at line 1)", None),
    ("cycle", "a = b + 1\nb = a * 2\ny ~ normal(a, 1)", None, "", "form a cycle: ", None),
    ("self-reference", "a = a + 1", None, "1:5", "`a` is defined in terms of itself", None),
    ("too-few-args", "mu ~ normal(0)", None, "1:6", "`normal` takes 2 arguments (mu, sigma), got 1", "normal(mu, sigma)"),
    ("too-many-args", "mu ~ gamma(1, 2, 3)", None, "1:6", "`gamma` takes 2 arguments", None),
    ("function-arity", "mu ~ normal(0, 1)\nz = exp(mu, 2)", None, "2:5", "`exp` takes 1 argument, got 2", None),
    ("unknown-distribution", "mu ~ normel(0, 1)", None, "1:6", "unknown distribution `normel`", "did you mean `normal`?"),
    ("unknown-function", "mu ~ normal(0, 1)\nz = lgama(mu)", None, "2:5", "unknown function `lgama`", "`lgamma`"),
    ("unknown-type", "x: rea[3]", None, "1:4", "unknown type `rea`", "did you mean `real`?"),
    ("syntax-unclosed", "mu ~ normal(0, 1)\ny ~ normal(mu, 1", None, "2:11", "`(` is never closed", "close it with `)`"),
    ("syntax-extra-paren", "mu ~ normal(0, 1))", None, "1:18", "unexpected `)`", None),
    ("syntax-string", 'mu ~ normal(0, 1)\ny = "a"', None, "2:5", "unexpected character `\"`", "no strings"),
    ("syntax-equals-for-tilde", "mu = normal(0, 1) ~ 2", None, "1:19", "unexpected `~`", None),
    ("incomplete-if", "mu ~ normal(0, 1)\ny = if mu > 0 then 1", None, "2:21", "unexpected end of file: `if C then A` needs an `else`",
     None),
    ("keyword-as-name", "data = 3", None, "1:6", "unexpected `=`", None),
    ("unknown-import", "import glmm\nmu ~ normal(0, 1)", None, "1:1", "no module named `glmm`", "did you mean `glm`?"),
    ("recursive-fn", "fn f(x) = g(x)\nfn g(x) = f(x) + 1\nmu ~ normal(0, 1)", None, "1:1",
     "functions cannot be recursive: f -> g -> f", None),
    ("fn-sees-only-arguments", "mu ~ normal(0, 1)\nfn f(x) = x + mu", None, "2:15", "`mu` is not defined in function `f`",
     "pass it as an argument"),
    ("fn-arity", "fn f(a, b) = a + b\nmu ~ normal(0, 1)\nz = f(mu)", None, "3:5", "`f` takes 2 arguments (a, b), got 1",
     None),
    ("fn-shadows-builtin", "fn exp(x) = x\nmu ~ normal(0, 1)", None, "1:1", "`exp` is a built-in name", None),
    ("loop-name-inside", "for t in range(0, 3) {\n  m = t\n}", None, "2:3", "inside a loop, define elements", None),
    ("loop-var-hides", "data y: real[3]\nfor y in range(0, 3) {\n  m[y] = 1\n}", None, "2:1",
     "the loop variable `y` hides another name", None),
    ("piecewise-overlap", "data y: real[4]\nm[0] = 1\nfor t in range(0, 4) {\n  m[t] = 2\n}\ny ~ normal(m, 1)",
     {"y": [1, 2, 3, 4]}, "4:3", "`m[0]` is defined twice (first at line 2)", None),
    ("piecewise-gap", "data y: real[4]\nm[0] = 1\nfor t in range(2, 4) {\n  m[t] = 2\n}\ny ~ normal(m, 1)",
     {"y": [1, 2, 3, 4]}, "2:1", "`m[1]` is never defined", None),
    ("loop-bound-parameter", "mu ~ normal(0, 1)\nfor t in range(0, mu) {\n  m[t] = 1\n}\ny ~ normal(m, 1)",
     {"y": [1.0]}, "2:1", "a loop bound must be known from the data", None),
    ("negative-loop-index", "data y: real[N]\nmu ~ normal(0, 1)\nfor t in range(0, N) {\n  y[t] ~ normal(y[t - 1], 1)\n}",
     {"y": [1.0, 2.0]}, "4:21", "index -1 is out of range", None),
    ("bad-bound-expression", "mu ~ normal(0, 1)\nsigma: real<lower=mu, upper=mu - 1> ~ normal(0, 1)\ny ~ normal(mu, sigma)",
     {"y": 1.0}, "2:1", "could not find a starting point with a finite log density", "lower bound"),
    ("dimension-mismatch", "data x: real[N]\ndata y: real[N]\nm ~ normal(0, 1)\ny ~ normal(m + x, 1)",
     {"x": [1, 2, 3], "y": [1, 2]}, "2:14", "`y` has length 2 but `N` is 3 from `x`", None),
    ("declared-rank", "data X: real[N, K]\nm ~ normal(0, 1)\nX ~ normal(m, 1)", {"X": [1.0, 2.0]}, "1:9",
     "data `X` has shape (2,) but is declared with 2 dimensions", None),
    ("shape-mismatch", "data x: real[3]\nm: real[4] ~ normal(0, 1)\ny ~ normal(m + x, 1)",
     {"x": [1, 2, 3], "y": [1, 2, 3]}, "3:14", "cannot apply `+` to shapes (4,) and (3,)", None),
    ("observed-shape", "mu: real[3] ~ normal(0, 1)\ny ~ normal(mu, 1)", {"y": [1.0, 2.0]}, "2:5",
     "`y` has shape (2,) but `normal` has arguments of shapes (3,), ()", None),
    ("missing-data", "data y: real[N]\nm ~ normal(0, 1)\ny ~ normal(m, 1)", {"Y": [1, 2]}, "1:1",
     "no data for `y`", "did you mean `Y`?"),
    ("nan-data", "data y: real[N]\nm ~ normal(0, 1)\ny ~ normal(m, 1)", {"y": [1.0, math.nan]}, "1:1",
     "data `y[1]` is NaN", "impute"),
    ("negative-count", "lam ~ gamma(1, 1)\nk ~ poisson(lam)", {"k": [1, -2]}, "2:1",
     "`k` is outside the support of `poisson` (counts 0, 1, 2, ...): k[1] = -2", None),
    ("probability-above-one", "a ~ normal(0, 1)\np ~ beta(2, 2)\ny ~ normal(a, 1)", {"y": 0.0, "p": 1.3}, "2:1",
     "`p` is outside the support of `beta` (values in [0, 1]): p = 1.3", None),
    ("non-integer-count", "lam ~ gamma(1, 1)\nk ~ poisson(lam)", {"k": [1, 2.5]}, "2:1",
     "data `k` must be whole numbers, but k[1] = 2.5", None),
    ("declared-bound", "data s: real<lower=0>[N]\nm ~ normal(0, 1)\ny ~ normal(m, s)", {"s": [1, -1], "y": [0, 0]},
     "1:9", "`s` must be >= 0, but s[1] = -1", None),
    ("index-out-of-range", "data g: int[N]\nmu: real[3] ~ normal(0, 1)\ny ~ normal(mu[g], 1)",
     {"g": [1, 2, 3], "y": [1, 2, 3]}, "3:15", "index 3 is out of range for an axis of length 3", "1-based"),
    ("real-index", "data x: real[N]\nmu: real[2] ~ normal(0, 1)\ny ~ normal(mu[x], 1)", {"x": [0, 1], "y": [1, 2]},
     "3:15", "an index must be an integer", "int"),
    ("infinite-discrete-latent", "lam ~ gamma(1, 1)\nk ~ poisson(lam)\ny ~ normal(k, 1)", {"y": 1.0}, "2:1",
     "`k` is a discrete latent variable with infinite support", "bound it"),
    ("flat-unbound", "sigma: real<lower=0>\nmu ~ normal(0, 1)\ny ~ normal(mu, 1)", {"y": 1.0}, "1:1",
     "`sigma` has no prior and nothing observed depends on it", None),
    ("int-declared-continuous", "x: int ~ normal(0, 1)", None, "1:4", "`x` is declared `int` but `normal` is continuous",
     None),
    ("unbound-dimension", "theta: real[J] ~ normal(0, 1)\ny ~ normal(theta, 1)", {"y": 1.0}, "1:13",
     "the size `J` is not known", None),
]


def run_cli(tmp_path, src, data, *extra, command="sample"):
    model = tmp_path / "m.gm"
    model.write_text(src)
    args = [command, str(model)]
    if data is not None:
        dfile = tmp_path / "d.json"
        dfile.write_text(json.dumps(data).replace("NaN", "NaN"))
        args += ["--data", str(dfile)]
    if command == "sample":
        args += ["--chains", "1", "--warmup", "20", "--draws", "20", "--quiet"]
    return main(args + list(extra)), str(model)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_error(case, tmp_path, capsys):
    _id, src, data, where, message, hint = case
    code, path = run_cli(tmp_path, src, data, command="sample" if data is not None else "check")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    head = err.splitlines()[0]
    assert head.startswith(f"{path}:{where}" if where else f"{path}:"), head
    assert ": error: " in head and message in head, head
    lines = err.splitlines()
    assert any(line.strip().startswith("^") for line in lines), err       # the caret line
    if hint:
        assert any(line.strip().startswith("hint:") and hint in line for line in lines), err


def test_data_file_errors(tmp_path, capsys):
    (tmp_path / "m.gm").write_text("mu ~ normal(0, 1)\ny ~ normal(mu, 1)\n")
    (tmp_path / "bad.json").write_text('{"y": [1, 2,\n  ]}')
    assert main(["sample", str(tmp_path / "m.gm"), "--data", str(tmp_path / "bad.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'bad.json'}:2:3: error: invalid JSON"), err
    assert main(["sample", str(tmp_path / "m.gm"), "--data", str(tmp_path / "none.json")]) == 2
    assert "data file not found" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "nomodel.gm")]) == 2
    assert "cannot read model file" in capsys.readouterr().err


def test_unknown_data_key_warns_with_suggestion_and_strict_fails(tmp_path, capsys):
    src = "data x: real[N]\nmu ~ normal(0, 1)\ny ~ normal(mu + x, 1)"
    data = {"x": [0.0, 1.0], "y": [0.5, 1.5], "Y": [1, 2]}
    code, _ = run_cli(tmp_path, src, data)
    err = capsys.readouterr().err
    assert code == 0
    assert "warning: data `Y` matches nothing in the model; did you mean `y`?" in err
    code, _ = run_cli(tmp_path, src, data, "--strict")
    assert code == 2 and "data `Y` matches nothing in the model" in capsys.readouterr().err


def test_sampling_with_nothing_observed_warns(tmp_path, capsys):
    code, _ = run_cli(tmp_path, "mu ~ normal(0, 1)\ny ~ normal(mu, 1)", {"yy": 1.0})
    err = capsys.readouterr().err
    assert code == 0
    assert "nothing in the model is observed" in err and "did you mean `y`?" in err


def test_check_prints_roles(tmp_path, capsys):
    src = open(os.path.join(os.path.dirname(__file__), "..", "examples", "eight_schools.gm")).read()
    data = {"y": [28, 8, -3, 7, -1, 1, 18, 12], "sigma": [15, 10, 16, 11, 9, 11, 10, 18]}
    code, _ = run_cli(tmp_path, src + "\ny_rep ~ normal(theta, sigma)\n", data, command="check")
    out = capsys.readouterr().out
    assert code == 0
    roles = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if not line.strip().startswith("[")}
    assert "[line 9] observes: y ~ normal(theta, sigma)" in out
    assert roles == {"y": "data", "sigma": "data", "mu": "latent", "tau": "latent", "theta_raw": "latent",
                     "theta": "deterministic", "y_rep": "generated"}
    assert "shape (8,)" in out


def test_real_process_exit_status_and_debug_traceback(tmp_path):
    model = tmp_path / "m.gm"
    model.write_text("mu ~ normal(0, 1)\ny ~ normal(mu, sigma)\n")
    cmd = [sys.executable, "-m", "ppl.cli", "check", str(model)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.startswith(f"{model}:2:16: error: `sigma` is not defined")
    assert "Traceback" not in res.stderr
    res = subprocess.run(cmd + ["--debug"], capture_output=True, text=True)
    assert "Traceback" in res.stderr


def test_json_nested_deeper_than_an_array_can_be_is_refused(tmp_path):
    # Python 3.11 and 3.12 raise RecursionError on very deep JSON (tests/bad/json_too_deep); 3.13
    # parses it, so the depth is also checked on the parsed value: the same error either way.
    import ppl
    import ppl.data

    def nested(levels):
        value = 1.0
        for _ in range(levels):
            value = [value]
        return value

    ok, too_deep = tmp_path / "ok.json", tmp_path / "deep.json"
    ok.write_text(json.dumps({"y": nested(64)}))          # numpy's most dimensions
    too_deep.write_text(json.dumps({"y": nested(65)}))
    assert ppl.load_data(str(ok))["y"] == nested(64)
    with pytest.raises(ppl.DataError, match="nested too deeply"):
        ppl.load_data(str(too_deep))
