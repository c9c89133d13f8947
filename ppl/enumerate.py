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
    walk.terms[(LIKELIHOOD, name)] = jnp.sum(logsumexp(logits, axis=0))
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
