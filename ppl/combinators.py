"""Distributions built from other distributions: `mixture(w, D(...))` (components along the last
axis of D's arguments), `hmm(init, trans, D(...))` (a hidden Markov chain marginalised by the
forward algorithm in log space) and `truncated(D(...), lo, hi)`. Each returns an ordinary
Distribution record, so the compiler treats it like any other."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import ast as A
from . import constraints as C
from .distributions import DISTRIBUTIONS, Distribution
from .errors import ModelError, did_you_mean
from .numerics import sum_logsumexp

COMBINATORS = {"mixture": ("weights", "component"), "hmm": ("init", "trans", "emission"),
               "truncated": ("dist", "lower", "upper")}


def _inner_call(call: A.Call, position: int) -> A.Call:
    arg = call.args[position]
    if not isinstance(arg, A.Call) or (arg.func not in DISTRIBUTIONS and arg.func not in COMBINATORS):
        raise ModelError(f"argument {position + 1} of `{call.func}` must be a distribution, like `normal(mu, sigma)`",
                         getattr(arg, "span", call.span))
    return arg


def check_call(call: A.Call, check_arity, check_expr) -> None:
    """Static checks of a distribution call, combinators included (no data needed)."""
    if call.func in COMBINATORS:
        params = COMBINATORS[call.func]
        if len(call.args) != len(params):
            raise ModelError(f"`{call.func}` takes {len(params)} arguments ({', '.join(params)}), got {len(call.args)}",
                             call.span, hint=_USAGE[call.func])
        inner_pos = params.index({"mixture": "component", "hmm": "emission", "truncated": "dist"}[call.func])
        for i, a in enumerate(call.args):
            if i == inner_pos:
                check_call(_inner_call(call, i), check_arity, check_expr)
            else:
                check_expr(a)
        return
    dist = DISTRIBUTIONS.get(call.func)
    if dist is None:
        from .functions import FUNCTIONS
        hint = did_you_mean(call.func, list(DISTRIBUTIONS) + list(COMBINATORS))
        if hint is None and call.func in FUNCTIONS:
            hint = f"`{call.func}` is a function, not a distribution"
        raise ModelError(f"unknown distribution `{call.func}`", call.span, hint=hint)
    check_arity(dist, call.args, call.span)
    for a in call.args:
        check_expr(a)


_USAGE = {"mixture": "usage: mixture(w, normal(mu, sigma)) with the components along the last axis",
          "hmm": "usage: hmm(init, trans, normal(mu, sigma)) with one emission per state along the last axis",
          "truncated": "usage: truncated(normal(mu, sigma), lower, upper)"}


def resolve(call: A.Call, evaluate) -> tuple:
    """(Distribution, evaluated argument list) for a distribution call."""
    if call.func == "mixture":
        inner, inner_args = resolve(_inner_call(call, 1), evaluate)
        return mixture(inner), [evaluate(call.args[0]), *inner_args]
    if call.func == "hmm":
        inner, inner_args = resolve(_inner_call(call, 2), evaluate)
        return hmm(inner), [evaluate(call.args[0]), evaluate(call.args[1]), *inner_args]
    if call.func == "truncated":
        inner, inner_args = resolve(_inner_call(call, 0), evaluate)
        if inner.lcdf is None:
            raise ModelError(f"`{inner.name}` has no CDF, so it cannot be truncated", call.span)
        return truncated(inner), [evaluate(call.args[1]), evaluate(call.args[2]), *inner_args]
    dist = DISTRIBUTIONS[call.func]
    return dist, [evaluate(a) for a in call.args]


# ---------------------------------------------------------------- mixture


def _gather_last(a, z):
    a = jnp.asarray(a)
    if a.ndim == 0:
        return a
    a = jnp.broadcast_to(a, z.shape + a.shape[-1:]) if a.ndim - 1 < z.ndim else a
    return jnp.take_along_axis(a, z[..., None], axis=-1)[..., 0]


def mixture(d: Distribution) -> Distribution:
    if d.event_dim:
        raise ModelError(f"`mixture` takes univariate components; `{d.name}` is multivariate")

    def weighted(x, w, *args):      # log w_k + log p_k(x), components on the last axis
        return jnp.log(w) + d.logpdf(jnp.asarray(x)[..., None], *args)

    def logpdf(x, w, *args):
        return logsumexp(weighted(x, w, *args), axis=-1)

    def logpdf_sum(x, w, *args):    # one log per group of terms (numerics.sum_logsumexp)
        return sum_logsumexp(weighted(x, w, *args), axis=-1)

    def sample(key, batch, w, *args, event_shape=None):
        k1, k2 = jax.random.split(key)
        logits = jnp.broadcast_to(jnp.log(w), tuple(batch) + jnp.shape(w)[-1:])
        z = jax.random.categorical(k1, logits)
        return d.sample(k2, tuple(batch), *[_gather_last(a, z) for a in args])

    def support(w, *args):
        return d.support(*[jnp.asarray(a)[..., 0] if jnp.ndim(a) else a for a in args])

    return Distribution(name=f"mixture of {d.name}", params=("w",) + d.params,
                        param_event_dims=(1,) + (1,) * len(d.params), event_dim=0, discrete=d.discrete,
                        logpdf=logpdf, sample=sample, support=support, event_shape=lambda *s: (),
                        logpdf_sum=logpdf_sum)


# ---------------------------------------------------------------- hidden Markov model


def forward_log_likelihood(log_init, log_trans, log_emit):
    """log p(y) by the forward algorithm; log_emit has shape (T, K)."""
    def step(alpha, le):
        alpha = logsumexp(alpha[:, None] + log_trans, axis=0) + le
        return alpha, None

    alpha0 = log_init + log_emit[0]
    alpha, _ = jax.lax.scan(step, alpha0, log_emit[1:])
    return logsumexp(alpha)


def hmm(d: Distribution) -> Distribution:
    if d.event_dim:
        raise ModelError(f"`hmm` takes univariate emissions; `{d.name}` is multivariate")

    def logpdf(x, init, trans, *args):
        x = jnp.asarray(x)
        log_emit = d.logpdf(x[..., None], *args)            # (..., T, K)
        f = lambda le: forward_log_likelihood(jnp.log(init), jnp.log(trans), le)  # noqa: E731
        for _ in range(log_emit.ndim - 2):
            f = jax.vmap(f)
        return f(log_emit)

    def sample(key, batch, init, trans, *args, event_shape=None):
        if not event_shape:
            raise ModelError("the length of an `hmm` sequence comes from its declared type, e.g. `y: real[T]`")
        T = event_shape[0]
        k1, k2, k3 = jax.random.split(key, 3)

        def one(key):
            ka, kb, kc = jax.random.split(key, 3)
            z0 = jax.random.categorical(ka, jnp.log(init))

            def step(z, k):
                z = jax.random.categorical(k, jnp.log(trans)[z])
                return z, z

            _, zs = jax.lax.scan(step, z0, jax.random.split(kb, T - 1))
            z = jnp.concatenate([z0[None], zs])
            return d.sample(kc, (T,), *[_gather_last(a, z) for a in args])

        keys = jax.random.split(k1, max(1, math.prod(batch)))
        out = jax.vmap(one)(keys)
        return out.reshape(tuple(batch) + (T,)) if batch else out[0]

    def support(init, trans, *args):
        base = d.support(*[jnp.asarray(a)[..., 0] if jnp.ndim(a) else a for a in args])
        return C.Constraint(base.kind, base.lower, base.upper, event_dim=1)

    return Distribution(name=f"hmm of {d.name}", params=("init", "trans") + d.params,
                        param_event_dims=(1, 2) + (1,) * len(d.params), event_dim=1, discrete=d.discrete,
                        logpdf=logpdf, sample=sample, support=support, event_shape=lambda *s: None)


# ---------------------------------------------------------------- truncation


def truncated(d: Distribution) -> Distribution:
    if d.event_dim:
        raise ModelError(f"`truncated` takes a univariate distribution; `{d.name}` is multivariate")

    def log_mass(lo, hi, *args):
        lo_edge = lo - 1 if d.discrete else lo
        a = d.lcdf(jnp.asarray(lo_edge, float), *args)
        b = d.lcdf(jnp.asarray(hi, float), *args)
        return b + jnp.log1p(-jnp.exp(jnp.minimum(a - b, 0.0)))

    def logpdf(x, lo, hi, *args):
        inside = (x >= lo) & (x <= hi)
        return jnp.where(inside, d.logpdf(x, *args) - log_mass(lo, hi, *args), -jnp.inf)

    def sample(key, batch, lo, hi, *args, event_shape=None):
        if d.icdf is None:
            raise ModelError(f"cannot simulate a truncated `{d.name}`: it has no inverse CDF")
        plo = jnp.exp(d.lcdf(jnp.asarray(lo, float), *args))
        phi = jnp.exp(d.lcdf(jnp.asarray(hi, float), *args))
        q = jax.random.uniform(key, tuple(batch))
        return jnp.clip(d.icdf(plo + q * (phi - plo), *args), lo, hi)

    def support(lo, hi, *args):
        return C.narrow(d.support(*args), lo, hi)

    return Distribution(name=f"truncated {d.name}", params=("lower", "upper") + d.params,
                        param_event_dims=(0, 0) + d.param_event_dims, event_dim=0, discrete=d.discrete,
                        logpdf=logpdf, sample=sample, support=support, event_shape=lambda *s: (),
                        lcdf=None, icdf=None)
