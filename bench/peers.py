"""The peers ppl is measured against, on the same models and data:

* NumPyro models (``numpyro_model``): the shared README's maths written the NumPyro way;
* hand-written JAX log densities on a flat unconstrained vector (``hand_model``), sampled
  with BlackJAX NUTS + window adaptation (``run_blackjax``): the "what an expert writes by
  hand" baseline;
* Stan programs (bench/models/*.stan) for PyStan, when it is installed (``stan_data``).

Everything is float64 unless the run asks for float32 (the worker sets JAX's precision
before importing this module).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

LOG2 = math.log(2.0)


def _half_normal_lpdf(x, s):
    return norm.logpdf(x, 0.0, s) + LOG2


def _half_cauchy_lpdf(x, s):
    return LOG2 - jnp.log(jnp.pi * s) - jnp.log1p(jnp.square(x / s))


# ----------------------------------------------------------------------------- hand-written JAX


class HandModel(NamedTuple):
    dim: int
    logdensity: Callable  # flat unconstrained vector -> scalar (Jacobians included)
    constrain: Callable  # flat unconstrained vector -> {name: constrained value}
    layout: list  # [(name, shape, transform)] in flat order; transform in {"id", "log", "ordered", "simplex"}


def _split(u, layout):
    out, i = {}, 0
    for name, shape, _ in layout:
        size = int(np.prod(shape)) if shape else 1
        out[name] = u[i:i + size].reshape(shape) if shape else u[i]
        i += size
    return out


def hand_model(model: str, data: dict) -> HandModel:
    """The hand-written log density of ``model`` on ``data`` (layout follows the GM file's order)."""
    if model == "eight_schools":
        y, sigma = jnp.asarray(data["y"], float), jnp.asarray(data["sigma"], float)
        J = y.shape[0]
        layout = [("mu", (), "id"), ("tau", (), "log"), ("theta_raw", (J,), "id")]

        def constrain(u):
            p = _split(u, layout)
            return {"mu": p["mu"], "tau": jnp.exp(p["tau"]), "theta_raw": p["theta_raw"]}

        def logdensity(u):
            p = _split(u, layout)
            tau = jnp.exp(p["tau"])
            lp = norm.logpdf(p["mu"], 0.0, 5.0) + _half_cauchy_lpdf(tau, 5.0) + p["tau"]
            lp += norm.logpdf(p["theta_raw"]).sum()
            return lp + norm.logpdf(y, p["mu"] + tau * p["theta_raw"], sigma).sum()

    elif model == "logistic":
        X, y = jnp.asarray(data["X"], float), jnp.asarray(data["y"], float)
        D = X.shape[1]
        layout = [("alpha", (), "id"), ("beta", (D,), "id")]

        def constrain(u):
            return _split(u, layout)

        def logdensity(u):
            alpha, beta = u[0], u[1:]
            eta = alpha + X @ beta
            lp = norm.logpdf(alpha) + norm.logpdf(beta).sum()
            # softplus as NumPyro writes it (one exp shared by value and gradient); jnp.logaddexp(0, eta)
            # evaluates a second exp for its gradient and measured ~25 % slower at N = 5000
            softplus = jnp.maximum(eta, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(eta)))
            return lp + jnp.sum(y * eta - softplus)

    elif model == "hier_linear":
        g = jnp.asarray(data["g"], jnp.int32)
        x, y = jnp.asarray(data["x"], float), jnp.asarray(data["y"], float)
        J = int(data["J"])
        layout = [("mu_a", (), "id"), ("mu_b", (), "id"), ("tau_a", (), "log"), ("tau_b", (), "log"),
                  ("sigma", (), "log"), ("z_a", (J,), "id"), ("z_b", (J,), "id")]

        def constrain(u):
            p = _split(u, layout)
            for k in ("tau_a", "tau_b", "sigma"):
                p[k] = jnp.exp(p[k])
            return p

        def logdensity(u):
            p = _split(u, layout)
            ta, tb, s = jnp.exp(p["tau_a"]), jnp.exp(p["tau_b"]), jnp.exp(p["sigma"])
            lp = norm.logpdf(p["mu_a"], 0.0, 5.0) + norm.logpdf(p["mu_b"], 0.0, 5.0)
            lp += _half_normal_lpdf(ta, 1.0) + _half_normal_lpdf(tb, 1.0) + _half_normal_lpdf(s, 1.0)
            lp += p["tau_a"] + p["tau_b"] + p["sigma"]
            lp += norm.logpdf(p["z_a"]).sum() + norm.logpdf(p["z_b"]).sum()
            a = p["mu_a"] + ta * p["z_a"]
            b = p["mu_b"] + tb * p["z_b"]
            return lp + norm.logpdf(y, a[g] + b[g] * x, s).sum()

    elif model.startswith("mixture"):
        y = jnp.asarray(data["y"], float)
        K = int(data["K"])
        layout = [("w", (K - 1,), "simplex"), ("mu", (K,), "ordered"), ("sigma", (K,), "log")]

        def parts(u):
            p = _split(u, layout)
            # simplex by additive log-ratio: w = softmax([v, 0]); log|J| = sum(log w) over all K
            logw = jax.nn.log_softmax(jnp.concatenate([p["w"], jnp.zeros(1, u.dtype)]))
            # ordered as in Stan: mu_0 = v_0, mu_k = mu_{k-1} + exp(v_k)
            mu = jnp.cumsum(jnp.concatenate([p["mu"][:1], jnp.exp(p["mu"][1:])]))
            return logw, mu, p

        def constrain(u):
            logw, mu, p = parts(u)
            return {"w": jnp.exp(logw), "mu": mu, "sigma": jnp.exp(p["sigma"])}

        def logdensity(u):
            logw, mu, p = parts(u)
            sigma = jnp.exp(p["sigma"])
            lp = logw.sum()  # Jacobian of the simplex map; Dirichlet(1, ..., 1) is flat on the simplex
            lp += norm.logpdf(mu, 0.0, 10.0).sum() + p["mu"][1:].sum()
            lp += _half_normal_lpdf(sigma, 2.0).sum() + p["sigma"].sum()
            comp = logw + norm.logpdf(y[:, None], mu, sigma)
            return lp + logsumexp(comp, axis=-1).sum()

    else:
        raise KeyError(model)

    dim = sum(int(np.prod(s)) if s else 1 for _, s, _ in layout)
    return HandModel(dim, logdensity, constrain, layout)


_BLACKJAX_RUNS: dict = {}  # one jitted program per (model, run size), so a second fit reuses it


def run_blackjax(hm: HandModel, chains: int, warmup: int, draws: int, seed: int,
                 target_accept: float = 0.8, max_depth: int = 10):
    """BlackJAX NUTS with window adaptation, chains vmapped, the whole run one jitted program.

    Initial points uniform(-2, 2) on the unconstrained space (as Stan, NumPyro and ppl).
    Returns (constrained draws {name: (chains, draws, ...)}, n_leapfrog (chains, draws),
    divergent (chains, draws)).
    """
    import blackjax
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    dtype = jnp.zeros(()).dtype
    key = jax.random.PRNGKey(seed)
    k_init, k_warm, k_samp = jax.random.split(key, 3)
    init = jax.random.uniform(k_init, (chains, hm.dim), dtype, minval=-2.0, maxval=2.0)
    warm_keys = jax.random.split(k_warm, chains)
    samp_keys = jax.random.split(k_samp, chains)
    cache_key = (id(hm), chains, warmup, draws, target_accept, max_depth)
    run = _BLACKJAX_RUNS.get(cache_key)
    if run is None:

        def one_chain(kw, ks, x0):
            adapt = blackjax.window_adaptation(blackjax.nuts, hm.logdensity, target_acceptance_rate=target_accept,
                                               adaptation_info_fn=get_filter_adapt_info_fn(),
                                               max_num_doublings=max_depth)
            (state, params), _ = adapt.run(kw, x0, num_steps=warmup)
            step = blackjax.nuts(hm.logdensity, **params).step  # params carry max_num_doublings

            def body(st, k):
                st, info = step(k, st)
                return st, (hm.constrain(st.position), info.num_integration_steps, info.is_divergent)

            _, out = jax.lax.scan(body, state, jax.random.split(ks, draws))
            return out

        run = _BLACKJAX_RUNS[cache_key] = jax.jit(jax.vmap(one_chain))
    values, n_leap, div = jax.block_until_ready(run(warm_keys, samp_keys, init))
    values = {k: np.asarray(v) for k, v in values.items()}
    return values, np.asarray(n_leap), np.asarray(div)


# ----------------------------------------------------------------------------- NumPyro


def numpyro_model(model: str, data: dict):
    """(model function, positional args) for ``model`` on ``data``."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    if model == "eight_schools":
        J = len(data["y"])

        def fn(y, sigma):
            mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
            tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
            with numpyro.plate("J", J):
                theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0))
                numpyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)

        return fn, (jnp.asarray(data["y"], float), jnp.asarray(data["sigma"], float))

    if model == "logistic":
        D = np.shape(data["X"])[1]

        def fn(X, y):
            alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
            beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([D]).to_event(1))
            numpyro.sample("y", dist.BernoulliLogits(alpha + X @ beta).to_event(1), obs=y)

        return fn, (jnp.asarray(data["X"], float), jnp.asarray(data["y"], float))

    if model == "hier_linear":
        J = int(data["J"])

        def fn(g, x, y):
            mu_a = numpyro.sample("mu_a", dist.Normal(0.0, 5.0))
            mu_b = numpyro.sample("mu_b", dist.Normal(0.0, 5.0))
            tau_a = numpyro.sample("tau_a", dist.HalfNormal(1.0))
            tau_b = numpyro.sample("tau_b", dist.HalfNormal(1.0))
            sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
            z_a = numpyro.sample("z_a", dist.Normal(0.0, 1.0).expand([J]).to_event(1))
            z_b = numpyro.sample("z_b", dist.Normal(0.0, 1.0).expand([J]).to_event(1))
            a = mu_a + tau_a * z_a
            b = mu_b + tau_b * z_b
            numpyro.sample("y", dist.Normal(a[g] + b[g] * x, sigma).to_event(1), obs=y)

        return fn, (jnp.asarray(data["g"], jnp.int32), jnp.asarray(data["x"], float), jnp.asarray(data["y"], float))

    if model.startswith("mixture"):
        K = int(data["K"])

        def fn(y):
            w = numpyro.sample("w", dist.Dirichlet(jnp.ones(K)))
            # Stan's `ordered[K] mu; mu ~ normal(0, 10)`: an ordered vector with a normal density
            mu = numpyro.sample("mu", dist.ImproperUniform(constraints.ordered_vector, (), (K,)))
            numpyro.factor("mu_prior", dist.Normal(0.0, 10.0).log_prob(mu).sum())
            sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([K]).to_event(1))
            mix = dist.MixtureSameFamily(dist.Categorical(probs=w), dist.Normal(mu, sigma))
            numpyro.sample("y", mix.expand([y.shape[0]]).to_event(1), obs=y)

        return fn, (jnp.asarray(data["y"], float),)

    raise KeyError(model)


def numpyro_logdensity(fn, args):
    """NumPyro's log density (minus its potential_fn) as a function of a flat unconstrained vector."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), fn, model_args=args, dynamic_args=False)
    z = info.param_info.z
    flat, unravel = ravel_pytree(z)

    def logp(u):
        return -info.potential_fn(unravel(u))

    return logp, int(flat.size), z, unravel


# ----------------------------------------------------------------------------- Stan


def stan_data(model: str, data: dict) -> dict:
    """The data in the Stan programs' layout (1-based group indices)."""
    if model == "eight_schools":
        return {"J": len(data["y"]), "y": np.asarray(data["y"]).tolist(), "sigma": np.asarray(data["sigma"]).tolist()}
    if model == "logistic":
        X = np.asarray(data["X"])
        return {"N": X.shape[0], "D": X.shape[1], "X": X.tolist(), "y": np.asarray(data["y"]).astype(int).tolist()}
    if model == "hier_linear":
        return {"N": len(data["y"]), "J": int(data["J"]), "g": (np.asarray(data["g"]) + 1).astype(int).tolist(),
                "x": np.asarray(data["x"]).tolist(), "y": np.asarray(data["y"]).tolist()}
    if model.startswith("mixture"):
        return {"N": len(data["y"]), "K": int(data["K"]), "y": np.asarray(data["y"]).tolist()}
    raise KeyError(model)
