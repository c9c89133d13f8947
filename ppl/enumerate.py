"""Discrete latent variables summed out of the log density by enumeration.

A latent node with finite support (bernoulli, categorical, binomial, `int<lower=a, upper=b>`)
takes every value of its support at once along a new leading axis; its descendants are
evaluated under that axis, their log densities reduced to the node's own batch shape, and the
node is marginalised element-wise with `logsumexp` — vectorised over independent elements
(`z: int[N] ~ categorical(theta); y ~ normal(mu[z], sigma)`). After inference each draw gets
`z` from its exact conditional, and `z.prob` holds the conditional probabilities."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from . import combinators
from .binding import KNOWN_ROLES, ROLE_DETERMINISTIC, ROLE_GENERATED, ROLE_OBSERVED
from .errors import ModelError
from .evaluate import Evaluator
from .numerics import sum_logsumexp

PROB_SUFFIX = ".prob"


def descendants(g, name) -> list:
    """Nodes that depend on `name`, in topological order."""
    children = g.children()
    found, stack = set(), [name]
    while stack:
        for c in children[stack.pop()]:
            if c not in found:
                found.add(c)
                stack.append(c)
    return [n for n in g.order if n in found]


def _reduce(term, batch, K, what, span):
    """A descendant's log density with a leading enumeration axis -> shape (K,) + batch."""
    term = jnp.asarray(term)
    if term.ndim == 0 or term.shape[0] != K:
        term = jnp.broadcast_to(term, (K,) + term.shape)
    if not batch:
        return jnp.sum(term.reshape(K, -1), axis=1)
    n = len(batch)
    if term.ndim < 1 + n or tuple(term.shape[1:1 + n]) != tuple(batch):
        try:
            term = jnp.broadcast_to(term, (K,) + tuple(batch) + term.shape[1 + n:]) if term.ndim >= 1 + n else \
                jnp.broadcast_to(term, (K,) + tuple(batch))
        except ValueError:
            raise ModelError(f"cannot sum out the discrete variable here: {what} has shape {term.shape[1:]}, "
                             f"which does not line up element by element with its shape {tuple(batch)}", span,
                             hint="each element of a summed-out variable must affect its own observations only")
    return jnp.sum(term.reshape((K,) + tuple(batch) + (-1,)), axis=-1)


def enumeration_logits(walk, name, dist, args, batch):
    """Log joint of every support value of `name` with everything that depends on it:
    shape (K,) + batch. Also returns the descendants and factors accounted for."""
    lw, g, b = walk.lw, walk.g, walk.b
    values = lw.enumerated[name]
    K = len(values)
    pad = batch if batch else (1,) * lw.enum_pad
    grid = jnp.broadcast_to(jnp.asarray(values).reshape((K,) + (1,) * len(pad)), (K,) + tuple(pad))
    node = g.nodes[name]
    prior = dist.logpdf(grid, *args) if dist is not None else jnp.zeros(grid.shape)
    total = _reduce(prior, batch, K, f"`{name}`", node.span)
    env = dict(walk.env)
    env[name] = grid
    ev = Evaluator(env, g.functions)
    covered = set()
    for d in descendants(g, name):
        dnode, role = g.nodes[d], b.roles[d]
        if dnode.pieces:
            raise ModelError(f"cannot sum out `{name}`: `{d}` is defined element-wise and depends on it "
                             "(not supported yet)", dnode.span)
        if role == ROLE_DETERMINISTIC:
            env[d] = ev(dnode.expr)
        elif role == ROLE_OBSERVED:
            ddist, dargs = combinators.resolve(dnode.dist, ev)
            total = total + _reduce(ddist.logpdf(env[d], *dargs), batch, K, f"`{d}`", dnode.span)
        elif role == ROLE_GENERATED:
            continue
        elif role not in KNOWN_ROLES:
            raise ModelError(f"cannot sum out `{name}`: the parameter `{d}` depends on it", dnode.span,
                             hint="only observed nodes and deterministic nodes may depend on a summed-out "
                                  "discrete variable")
        covered.add(d)
    factors = []
    for j, f in enumerate(g.factors):
        if name in f.parents or covered & set(f.parents):
            if f.loops:
                raise ModelError(f"cannot sum out `{name}` through a loop (not supported yet)", f.span)
            if f.kind == "target":
                term = ev(f.value)
            else:
                fdist, fargs = combinators.resolve(f.dist, ev)
                term = fdist.logpdf(ev(f.value), *fargs)
            total = total + _reduce(term, batch, K, "an observation", f.span)
            factors.append(j)
    return total, covered, factors


def sum_out(walk, name, dist, args, batch):
    """Density mode: add the marginal of `name` (and what depends on it) to the terms."""
    from .lower import LIKELIHOOD
    logits, covered, factors = enumeration_logits(walk, name, dist, args, batch)
    walk.terms[(LIKELIHOOD, name)] = sum_logsumexp(logits, axis=0)
    walk.skip |= covered
    walk.skip_factors |= set(factors)


def draw_conditional(walk, name, dist, args, batch, key):
    """Generate mode: draw `name` from its exact conditional given everything else."""
    logits, _, _ = enumeration_logits(walk, name, dist, args, batch)
    values = jnp.asarray(walk.lw.enumerated[name])
    k = jax.random.categorical(key, logits, axis=0)
    walk.env[name] = values[k]
    walk.env[name + PROB_SUFFIX] = jnp.moveaxis(jax.nn.softmax(logits, axis=0), 0, -1)


def support_values(node, c) -> np.ndarray:
    """The finite support of a discrete latent node, or a clear error."""
    values = c.finite_values()
    if values is None:
        raise ModelError(f"`{node.name}` is a discrete latent variable with infinite support "
                         f"({c.kind.replace('_', ' ')}), which cannot be summed out", node.span,
                         hint="supply it as data, or bound it: `int<lower=0, upper=20>`")
    if len(values) > 10000:
        raise ModelError(f"`{node.name}` has {len(values)} possible values: too many to sum out", node.span)
    return np.asarray(values)


# ---------------------------------------------------------------- Markov chains of discrete nodes


def _chain_pieces(node, g):
    """A chain written out as `z[0] ~ D0(...)` and `for t in range(1, T) { z[t] ~ D(... z[t - 1] ...) }`."""
    from . import ast as A
    fixed = [p for p in node.pieces if not p.loops]
    looped = [p for p in node.pieces if p.loops]
    ok = (len(fixed) == 1 and len(looped) == 1 and len(looped[0].loops) == 1 and len(fixed[0].indices) == 1
          and isinstance(fixed[0].indices[0], A.Num) and fixed[0].indices[0].value == 0
          and len(looped[0].indices) == 1 and isinstance(looped[0].indices[0], A.Name)
          and looped[0].indices[0].id == looped[0].loops[0].var)
    if not ok:
        raise ModelError(f"`{node.name}` is a discrete latent array; it can be summed out when it is a Markov "
                         f"chain written as `{node.name}[0] ~ ...` and `for t in range(1, T) {{ {node.name}[t] ~ "
                         f"... {node.name}[t - 1] ... }}`", node.span)
    return fixed[0], looped[0]


def chain_terms(walk, name):
    """log p(z0) (K,), log p(z_t | z_{t-1}) (T-1, K, K) and log p(children | z_t) (T, K)."""
    from .pieces import grid_map
    lw, g = walk.lw, walk.g
    node = g.nodes[name]
    p0, p1 = _chain_pieces(node, g)
    values = jnp.asarray(lw.enumerated[name])
    T = lw.extent[name][0]
    d0, a0 = combinators.resolve(p0.dist, walk.ev)
    log_init = d0.logpdf(values, *a0)
    ranges = walk.pieces.ranges(p1.loops)

    def given_previous(j):
        env = {**walk.env, name: jnp.full((T,), j, dtype=values.dtype)}

        def one(vals, ops):
            ev = Evaluator({**env, p1.loops[0].var: vals[0]}, g.functions)
            d, args = combinators.resolve(p1.dist, ev)
            return d.logpdf(values, *args)

        return grid_map(one, ranges)                      # (T - 1, K)

    log_trans = jnp.moveaxis(jax.vmap(given_previous)(values), 0, 1)    # (T - 1, K_prev, K)
    log_emit, covered, factors = enumeration_logits(walk, name, None, [], (T,))
    return log_init, log_trans, log_emit.T, covered, factors


def _forward(log_init, log_trans, log_emit):
    def step(alpha, x):
        lt, le = x
        alpha = logsumexp(alpha[:, None] + lt, axis=0) + le
        return alpha, alpha

    a0 = log_init + log_emit[0]
    _, alphas = jax.lax.scan(step, a0, (log_trans, log_emit[1:]))
    return jnp.concatenate([a0[None], alphas])


def sum_out_chain(walk, name):
    from .lower import LIKELIHOOD
    log_init, log_trans, log_emit, covered, factors = chain_terms(walk, name)
    alphas = _forward(log_init, log_trans, log_emit)
    walk.terms[(LIKELIHOOD, name)] = logsumexp(alphas[-1])
    walk.skip |= covered
    walk.skip_factors |= set(factors)


def draw_chain(walk, name, key):
    """Forward filtering, backward sampling; marginal state probabilities by forward-backward."""
    log_init, log_trans, log_emit, _, _ = chain_terms(walk, name)
    alphas = _forward(log_init, log_trans, log_emit)
    T = alphas.shape[0]
    keys = jax.random.split(key, T)
    z_last = jax.random.categorical(keys[-1], alphas[-1])

    def back(z_next, x):
        alpha, lt, k = x
        z = jax.random.categorical(k, alpha + lt[:, z_next])
        return z, z

    _, zs = jax.lax.scan(back, z_last, (alphas[:-1], log_trans, keys[:-1]), reverse=True)
    z = jnp.concatenate([zs, z_last[None]])

    def beta_step(beta, x):
        lt, le = x
        beta = logsumexp(lt + (le + beta)[None, :], axis=1)
        return beta, beta

    _, betas = jax.lax.scan(beta_step, jnp.zeros_like(alphas[-1]), (log_trans, log_emit[1:]), reverse=True)
    betas = jnp.concatenate([betas, jnp.zeros_like(alphas[-1])[None]])
    values = jnp.asarray(walk.lw.enumerated[name])
    walk.env[name] = values[z]
    walk.env[name + PROB_SUFFIX] = jax.nn.softmax(alphas + betas, axis=-1)
