import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root, if not installed

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sps
import scipy.stats as sst

import ppl  # noqa: F401  (enables float64)
from ppl import functions as F

rng = np.random.default_rng(0)
X = rng.normal(size=(3, 4))
V = rng.normal(size=5)
P = rng.uniform(0.05, 0.95, size=5)
POS = rng.uniform(0.5, 3.0, size=(3, 4))
SPD = X @ X.T + 3 * np.eye(3)


def call(name, *args):
    """Call a built-in under jit (one XLA compile per call beats many eager op compiles)."""
    b = F.get(name)
    return jax.jit(b.fn, static_argnums=b.static_args)(*args)


def call_eager(name, *args):
    return F.get(name).fn(*args)


# name, args, numpy/scipy reference
ELEMENTWISE = [
    ("abs", (V,), np.abs),
    ("exp", (V,), np.exp),
    ("log", (POS,), np.log),
    ("log1p", (POS,), np.log1p),
    ("expm1", (V,), np.expm1),
    ("log1m", (P,), lambda x: np.log(1 - x)),
    ("sqrt", (POS,), np.sqrt),
    ("square", (X,), np.square),
    ("pow", (POS, V[:4]), np.power),
    ("sin", (V,), np.sin),
    ("cos", (V,), np.cos),
    ("tan", (V,), np.tan),
    ("tanh", (V,), np.tanh),
    ("floor", (3 * V,), np.floor),
    ("ceil", (3 * V,), np.ceil),
    ("fmin", (X, V[:4]), np.fmin),
    ("fmax", (X, V[:4]), np.fmax),
    ("lgamma", (POS,), sps.gammaln),
    ("digamma", (POS,), sps.digamma),
    ("erf", (V,), sps.erf),
    ("Phi", (V,), sst.norm.cdf),
    ("inv_Phi", (P,), sst.norm.ppf),
    ("inv_logit", (V,), sps.expit),
    ("logit", (P,), sps.logit),
    ("log_inv_logit", (V,), lambda x: np.log(sps.expit(x))),
    ("log1m_inv_logit", (V,), lambda x: np.log(1 - sps.expit(x))),
    ("softplus", (V,), lambda x: np.log1p(np.exp(x))),
    ("log_diff_exp", (V + 3, V), lambda a, b: np.log(np.exp(a) - np.exp(b))),
    ("log_diff_exp", (V + 0.01, V), lambda a, b: np.log(np.exp(a) - np.exp(b))),
]

REDUCTIONS = [
    ("sum", np.sum),
    ("prod", np.prod),
    ("mean", np.mean),
    ("variance", lambda x, axis=None: np.var(x, axis=axis, ddof=1)),
    ("sd", lambda x, axis=None: np.std(x, axis=axis, ddof=1)),
    ("min", np.min),
    ("max", np.max),
    ("log_sum_exp", sps.logsumexp),
]

OTHERS = [
    ("softmax", (X,), lambda x: sps.softmax(x, axis=-1)),
    ("log_softmax", (X,), lambda x: sps.log_softmax(x, axis=-1)),
    ("cumsum", (X,), lambda x: np.cumsum(x, axis=-1)),
    ("reverse", (X,), lambda x: x[..., ::-1]),
    ("sort", (X,), lambda x: np.sort(x, axis=-1)),
    ("concat", (V, 2.0, V[:2]), lambda *a: np.concatenate([np.atleast_1d(v) for v in a])),
    ("concat", (X, 1.0), lambda x, c: np.concatenate([x, np.ones((3, 1))], axis=1)),
    ("dot", (V, V[::-1]), np.dot),
    ("dot", (X, V[:4]), lambda a, b: a @ b),
    ("outer", (V, V[:3]), np.outer),
    ("crossprod", (X,), lambda x: x.T @ x),
    ("tcrossprod", (X,), lambda x: x @ x.T),
    ("transpose", (X,), np.transpose),
    ("transpose", (V,), lambda v: v),
    ("cholesky", (SPD,), np.linalg.cholesky),
    ("inverse", (SPD,), np.linalg.inv),
    ("diag", (V,), np.diag),
    ("diag", (X,), np.diag),
]


@pytest.mark.parametrize("name,args,ref", ELEMENTWISE, ids=[e[0] for e in ELEMENTWISE])
def test_elementwise(name, args, ref):
    np.testing.assert_allclose(call(name, *args), ref(*args), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,args,ref", OTHERS, ids=[e[0] for e in OTHERS])
def test_others(name, args, ref):
    np.testing.assert_allclose(call(name, *args), ref(*args), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,ref", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_reductions(name, ref, axis):
    args = (X,) if axis is None else (X, axis)
    out = call(name, *args)
    np.testing.assert_allclose(out, ref(X, axis=axis), rtol=1e-9, atol=1e-12)
    assert jnp.shape(out) == (() if axis is None else tuple(np.delete(X.shape, axis)))


@pytest.mark.parametrize("name,ref", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reductions_jit_static_axis(name, ref):
    f = jax.jit(F.get(name).fn, static_argnums=F.get(name).static_args)
    np.testing.assert_allclose(f(X, 0), ref(X, axis=0), rtol=1e-9)
    np.testing.assert_allclose(jax.jit(F.get(name).fn)(X), ref(X), rtol=1e-9)


def test_sd_variance_divide_by_n_minus_1():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert float(call("variance", x)) == pytest.approx(5 / 3)
    assert float(call("sd", x)) == pytest.approx(math.sqrt(5 / 3))
    # a single observation has zero spread (Stan), not NaN
    assert float(call("sd", np.array([2.0]))) == 0.0
    np.testing.assert_array_equal(call("variance", np.ones((1, 3)), 0), np.zeros(3))


def test_round_half_away_from_zero():
    np.testing.assert_array_equal(call("round", np.array([-2.5, -1.4, 0.5, 1.5, 2.5])),
                                  [-3.0, -1.0, 1.0, 2.0, 3.0])


def test_broadcasting():
    np.testing.assert_allclose(call("pow", 2.0, V), 2.0 ** V)
    np.testing.assert_allclose(call("log_diff_exp", 5.0, V), np.log(np.exp(5.0) - np.exp(V)))
    np.testing.assert_allclose(call("fmax", X, 0.0), np.maximum(X, 0.0))


def test_integer_promotion():
    for name in ["exp", "log", "sqrt", "lgamma", "Phi", "inv_logit", "floor", "mean", "sd", "log_sum_exp"]:
        out = call(name, jnp.arange(1, 4))
        assert jnp.issubdtype(out.dtype, jnp.floating), name
    assert call("pow", 2, -1).dtype == jnp.float64
    assert float(call("pow", 2, -1)) == 0.5
    assert call("sum", jnp.arange(4)).dtype == jnp.int64  # sums of ints stay ints


BIG = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
STABLE = [
    ("softplus", (BIG,), np.logaddexp(0.0, BIG)),
    ("log_inv_logit", (BIG,), -np.logaddexp(0.0, -BIG)),
    ("log1m_inv_logit", (BIG,), -np.logaddexp(0.0, BIG)),
    ("inv_logit", (BIG,), sps.expit(BIG)),
    ("log_sum_exp", (BIG,), 1000.0),
    ("log_sum_exp", (np.array([1000.0, 1000.0]),), 1000.0 + math.log(2)),
    ("log_sum_exp", (np.array([-1000.0, -1000.0]),), -1000.0 + math.log(2)),
    ("softmax", (BIG,), np.array([0, 0, 0, 0, 1.0])),
    ("log_softmax", (BIG,), BIG - 1000.0),
    ("log_diff_exp", (BIG, BIG - 1.0), BIG + np.log1p(-np.exp(-1.0))),
    ("log_diff_exp", (np.array([1000.0, 0.0]), np.array([0.0, -1000.0])), np.array([1000.0, 0.0])),
    ("log_diff_exp", (np.array([0.0]), np.array([-1e-12])), np.log(-np.expm1(-1e-12))),
    ("log_diff_exp", (np.array([3.0]), np.array([-np.inf])), np.array([3.0])),
    ("Phi", (BIG,), sst.norm.cdf(BIG)),
    ("logit", (np.array([1e-300, 1 - 1e-15]),), sps.logit(np.array([1e-300, 1 - 1e-15]))),
]


@pytest.mark.parametrize("name,args,expected", STABLE, ids=[s[0] for s in STABLE])
def test_stability(name, args, expected):
    out = np.asarray(call(name, *args))
    assert np.all(np.isfinite(out)), out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-300)


GRAD_AT_EXTREMES = [
    ("softplus", (BIG,)),
    ("log_inv_logit", (BIG,)),
    ("log1m_inv_logit", (BIG,)),
    ("inv_logit", (BIG,)),
    ("log_sum_exp", (BIG,)),
    ("softmax", (BIG,)),
    ("log_softmax", (BIG,)),
    ("log_diff_exp", (BIG, BIG - 1.0)),
    ("log_diff_exp", (np.array([1000.0, 0.0, 0.0]), np.array([0.0, -1000.0, -1e-3]))),
    ("Phi", (BIG,)),
]


@pytest.mark.parametrize("name,args", GRAD_AT_EXTREMES, ids=[g[0] for g in GRAD_AT_EXTREMES])
def test_gradients_finite_at_extremes(name, args):
    fn = F.get(name).fn
    grad = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=tuple(range(len(args)))))
    grads = grad(*map(jnp.asarray, args))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))), (name, g)


def test_gradient_values():
    g = jax.grad(lambda x: jnp.sum(call("softplus", x)))(jnp.asarray(BIG))
    np.testing.assert_allclose(g, sps.expit(BIG))
    g = jax.grad(lambda x: call("log_sum_exp", x))(jnp.asarray(V))
    np.testing.assert_allclose(g, sps.softmax(V))
    ga, gb = jax.grad(lambda a, b: call("log_diff_exp", a, b), argnums=(0, 1))(2.0, 1.0)
    e = math.exp(2.0) - math.exp(1.0)
    assert float(ga) == pytest.approx(math.exp(2.0) / e)
    assert float(gb) == pytest.approx(-math.exp(1.0) / e)


def test_log_diff_exp_degenerate():
    assert float(call("log_diff_exp", 1.0, 1.0)) == -np.inf
    assert np.isnan(float(call("log_diff_exp", 0.0, 1.0)))


@pytest.mark.parametrize(
    "name,args,expected",
    [
        ("zeros", (3,), np.zeros(3)),
        ("zeros", (2, 3), np.zeros((2, 3))),
        ("ones", (4,), np.ones(4)),
        ("ones", (2, 2), np.ones((2, 2))),
        ("identity", (3,), np.eye(3)),
        ("arange", (4,), np.arange(4)),
        ("linspace", (0.0, 1.0, 5), np.linspace(0, 1, 5)),
        ("rep", (2.5, 3), np.full(3, 2.5)),
        ("rep", (V[:2], 3), np.tile(V[:2], (3, 1))),
    ],
)
def test_static_args_under_jit(name, args, expected):
    b = F.get(name)
    assert b.static_args, name
    f = jax.jit(b.fn, static_argnums=b.static_args)
    np.testing.assert_allclose(f(*args), expected)
    np.testing.assert_allclose(b.fn(*args), expected)


def test_linspace_traced_endpoints():
    f = jax.jit(lambda a, b: call("linspace", a, b, 3))
    np.testing.assert_allclose(f(1.0, 2.0), [1.0, 1.5, 2.0])


def test_shape_queries_are_python_ints_under_jit():
    seen = {}

    @jax.jit
    def f(x):
        seen.update(size=call_eager("size", x), n=call_eager("num_elements", x), r=call_eager("rows", x), c=call_eager("cols", x))
        return call_eager("zeros", call_eager("rows", x)) + x[:, 0]

    f(jnp.asarray(X))
    assert seen == {"size": 12, "n": 12, "r": 3, "c": 4}
    assert all(type(v) is int for v in seen.values())
    assert (call_eager("rows", V), call_eager("cols", V), call_eager("size", 2.0)) == (5, 1, 1)


def test_gp_exp_quad_cov():
    x = rng.normal(size=6)
    alpha, rho = 1.7, 0.8
    ref = alpha**2 * np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * rho**2))
    np.testing.assert_allclose(call("gp_exp_quad_cov", x, alpha, rho), ref, rtol=1e-12)
    pts = rng.normal(size=(5, 2))
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(call("gp_exp_quad_cov", pts, alpha, rho),
                               alpha**2 * np.exp(-d2 / (2 * rho**2)), rtol=1e-12)
    cross = call("gp_exp_quad_cov", x, x[:2], alpha, rho)
    np.testing.assert_allclose(cross, ref[:, :2], rtol=1e-12)
    g = jax.grad(lambda a, r: jnp.sum(call("gp_exp_quad_cov", x, a, r)), argnums=(0, 1))(alpha, rho)
    assert all(np.isfinite(float(v)) for v in g)


def test_vmap():
    batch = jnp.asarray(rng.normal(size=(4, 5)))
    for name in ["log_sum_exp", "softmax", "sd", "cumsum", "dot"]:
        fn = F.get(name).fn
        args = (batch,) if name != "dot" else (batch, batch)
        out = jax.jit(jax.vmap(fn))(*args)
        ref = jnp.stack([call(name, *(a[i] for a in args)) for i in range(4)])
        np.testing.assert_allclose(out, ref, rtol=1e-12)


EXPECTED_ARITY = {
    **{n: (1, 1) for n in [
        "abs", "exp", "log", "log1p", "expm1", "log1m", "sqrt", "square", "sin", "cos", "tan", "tanh",
        "floor", "ceil", "round", "lgamma", "digamma", "erf", "Phi", "inv_Phi", "inv_logit", "logit",
        "log_inv_logit", "log1m_inv_logit", "softplus", "softmax", "log_softmax", "cumsum", "reverse",
        "sort", "identity", "arange", "crossprod", "tcrossprod", "transpose", "cholesky", "inverse",
        "diag", "size", "num_elements", "rows", "cols"]},
    **{n: (2, 2) for n in ["pow", "fmin", "fmax", "log_diff_exp", "rep", "dot", "outer"]},
    **{n: (1, 2) for n in ["sum", "prod", "mean", "variance", "sd", "min", "max", "log_sum_exp",
                           "zeros", "ones"]},
    "concat": (1, F.VARIADIC_MAX),
    "linspace": (3, 3),
    "gp_exp_quad_cov": (3, 4),
}


def test_registry_contents_and_arity():
    assert set(F.FUNCTIONS) == set(EXPECTED_ARITY)
    for name, (lo, hi) in EXPECTED_ARITY.items():
        b = F.get(name)
        assert b.name == name
        assert (b.min_args, b.max_args) == (lo, hi), name
        assert all(0 <= i < b.max_args for i in b.static_args), name
        assert b.doc.startswith(name + "(") and ": " in b.doc, name
    assert F.VARIADIC_MAX >= 16
    for name in ["sum", "mean", "sd", "variance", "prod", "min", "max", "log_sum_exp"]:
        assert F.get(name).static_args == (1,)


def test_signature_and_unknown():
    assert F.signature("sd") == "sd(x[, axis])"
    assert F.signature("pow") == "pow(x, y)"
    assert F.signature("concat") == "concat(a, b, ...)"
    assert F.signature("linspace") == "linspace(a, b, n)"
    with pytest.raises(KeyError, match="meen"):
        F.get("meen")
    with pytest.raises(KeyError):
        F.signature("nope")
    with pytest.raises(Exception):
        F.get("sum").__setattr__("name", "x")  # frozen


# ---------------------------------------------------------------- what the data alone determine
@pytest.mark.parametrize("source", ["log(u) / log(10) - 2 * u", "-sqrt(u) + fmax(u, 1.5) * exp(-u)",
                                    "k / 2 + abs(k) - square(k)", "floor(u) * ceil(k * 0.3)",
                                    "(u - mean(u)) / (2 * sd(u)) + variance(k) - sum(k)",
                                    "(k == 2) + (k != 3) * (k < u) - (k >= 1) * (u <= 2) + (u > 1)",
                                    "mean(m, 1) + sum(m, 0)[0] + sd(m, 0)[1] + sd(k[0:1])"])
def test_data_expressions_in_numpy_equal_jax(source):
    """Operands that are all numpy are computed with numpy (nothing to compile); the same
    expression on jax arrays goes through jax.numpy: equal values, equal dtypes."""
    from ppl.evaluate import Evaluator
    from ppl.parser import parse

    expr = parse(f"z = {source}\n").statements[0].value
    env = {"u": POS.ravel(), "k": np.arange(-3, 9), "m": X}
    in_numpy = Evaluator(env)(expr)
    in_jax = Evaluator({k: jnp.asarray(v) for k, v in env.items()})(expr)
    assert isinstance(in_numpy, np.ndarray) and isinstance(in_jax, jax.Array)
    assert in_numpy.dtype == in_jax.dtype
    np.testing.assert_allclose(in_numpy, np.asarray(in_jax), rtol=1e-14)
