"""Binding -> JAX functions. One walk over the graph, in topological order, rewritten three
ways (as in mcx): the log density on the unconstrained space, the generator that turns a
sampler state into every output (posterior predictive included), and the ancestral simulator.

Array data are arguments of these functions, never constants baked into them, so new data of
the same shapes reuses the compiled program; only sizes (Binding.static) are compile-time."""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import ast as A
from . import combinators
from . import constraints as C
from . import suffstats
from .bounded_draws import draw_within
from .binding import (KNOWN_ROLES, ROLE_DETERMINISTIC, ROLE_GENERATED, ROLE_LATENT, ROLE_OBSERVED,
                      STRUCTURED, Binding)
from .distributions import DISTRIBUTIONS, sample_ordered
from .errors import ModelError
from .evaluate import Evaluator, is_concrete, staged_shape, static_int
from .graph import FLAT
from .enumerate import (PROB_SUFFIX, descendants, draw_chain, draw_conditional, sum_out, sum_out_chain,
                        support_values)
from .pieces import Pieces, loop_factor

DENSITY, GENERATE, SIMULATE, SHAPES = "density", "generate", "simulate", "shapes"
PRIOR, LIKELIHOOD, JACOBIAN = "prior", "likelihood", "jacobian"
PARTS_ALL = (PRIOR, LIKELIHOOD, JACOBIAN)
PARTS_MAP = (PRIOR, LIKELIHOOD)
PARTS_MLE = (LIKELIHOOD,)


@dataclass(frozen=True)
class LatentSlot:
    """Where one latent node lives in the flat unconstrained vector."""

    name: str
    shape: tuple          # constrained value shape
    ushape: tuple         # unconstrained shape
    offset: int
    size: int


class Lowered:
    """The compiled-to-JAX form of a bound model."""

    def __init__(self, binding: Binding):
        self.binding = binding
        self.graph = binding.graph
        self.shapes: dict = {}
        self.slots: list = []
        self._ushapes: dict = {}
        # facts about piecewise nodes found by the shape pass (see ppl.pieces)
        self.piece_index: dict = {}
        self.extent: dict = {}
        self.elem_shape: dict = {}
        self.piece_constraint: dict = {}
        self.enumerated: dict = {}          # discrete latent name -> support values (summed out)
        self.suffstats: dict = {}           # observed name -> suffstats.Plan (found by the shape pass)
        self._statistics = (None, {})       # (the binding's arrays, the plans' statistics from them)
        self.enum_pad = max([np.ndim(v) for v in binding.arrays.values()] + [1])
        self._infer_shapes()
        suffstats.drop_batched(self.suffstats, self.graph, self.enumerated)
        offset = 0
        for name in binding.nodes_with(ROLE_LATENT):
            if name in self.enumerated:
                continue
            ushape = self._ushapes[name]
            size = int(math.prod(ushape))
            self.slots.append(LatentSlot(name, self.shapes[name], ushape, offset, size))
            offset += size
        self.dim = offset
        self.output_names = [n for n in self.graph.order
                             if binding.roles[n] in (ROLE_LATENT, ROLE_GENERATED, ROLE_DETERMINISTIC)]
        self.output_names += [n + PROB_SUFFIX for n in self.enumerated]

    # ------------------------------------------------------------------ public functions
    def arrays(self) -> dict:
        """The data arguments for the functions below (``device_put``, not ``jnp.asarray``, which
        compiles a copy program per array shape), with the sufficient statistics of the
        likelihoods ``ppl.suffstats`` rewrites."""
        out = {k: jax.device_put(np.asarray(v)) for k, v in self.binding.arrays.items()}
        out.update({k: jax.device_put(v) for k, v in self.statistics().items()})
        return out

    def statistics(self) -> dict:
        """The data arguments of the rewritten likelihoods, computed once per data set."""
        source, stats = self._statistics
        if source is not self.binding.arrays:
            try:
                stats = suffstats.statistics(self.suffstats.values(), self.binding, self.graph.functions)
            except ModelError as err:
                raise err.located(self.graph.file, self.graph.source) from None
            self._statistics = (self.binding.arrays, stats)
        return stats

    def log_density(self, u, arrays, parts=PARTS_ALL):
        """The log density at the unconstrained point ``u``.

        ``parts`` picks terms: all of them (the posterior on the unconstrained space), or
        ``PARTS_MAP`` (prior + likelihood, no Jacobian: MAP in the constrained space, as Stan's
        optimiser) or ``PARTS_MLE`` (likelihood only)."""
        terms = self.log_density_terms(u, arrays)
        return sum((v for (part, _), v in terms.items() if part in parts), jnp.zeros(()))

    def log_density_terms(self, u, arrays) -> dict:
        """Every term of the log density, keyed ``(part, name)`` with part one of 'prior',
        'likelihood' (observed nodes, observed expressions, `target +=`) and 'jacobian'."""
        return _Walk(self, arrays, DENSITY, u=u).run().terms

    def log_density_given(self, u, arrays, discrete: dict):
        """The log density with the summed-out discrete variables fixed at ``discrete``
        (name -> values) instead of summed out: the continuous half of a Gibbs sweep."""
        w = _Walk(self, arrays, DENSITY, u=u, discrete=discrete).run()
        return sum(w.terms.values(), jnp.zeros(()))

    def log_density_gibbs(self, u, arrays_and_discrete):
        """``log_density_given`` with its two data arguments as one (the sampler's data slot)."""
        arrays, discrete = arrays_and_discrete
        return self.log_density_given(u, arrays, discrete)

    def draw_discrete(self, key, u, arrays) -> dict:
        """Each summed-out variable drawn from its exact conditional given the state ``u``."""
        w = _Walk(self, arrays, GENERATE, u=u, key=key).run()
        return {n: w.env[n] for n in self.enumerated}

    def generate(self, key, u, arrays) -> dict:
        """Every output node's value for one sampler state (generated nodes drawn afresh)."""
        w = _Walk(self, arrays, GENERATE, u=u, key=key).run()
        return {n: w.env[n] for n in self.output_names}

    def simulate(self, key, arrays) -> dict:
        """Ancestral draw of every node the data does not fix (a summed-out variable is drawn
        like any other, so it has no conditional probabilities ``name.prob``)."""
        w = _Walk(self, arrays, SIMULATE, key=key).run()
        return {n: w.env[n] for n in self.output_names if n in w.env}

    def unconstrain(self, values: dict):
        """Flat unconstrained vector from constrained values of the latent nodes (e.g. inits)."""
        w = _Walk(self, self.arrays(), GENERATE, u=jnp.zeros(self.dim), fixed=values).run()
        return w.u_from_fixed

    # ------------------------------------------------------------------ shapes
    def _infer_shapes(self):
        b = self.binding
        concrete = {k: v for k, v in b.arrays.items()}

        def probe(key):
            # Values computed from the data alone stay concrete (so indices and loop ranges can
            # be checked); anything touching a parameter (drawn from the traced key) is abstract.
            with jax.ensure_compile_time_eval():
                w = _Walk(self, concrete, SHAPES, key=key).run()
            return {n: w.env[n] for n in w.env if n in self.graph.nodes}

        try:
            out = jax.eval_shape(probe, jax.ShapeDtypeStruct((2,), jnp.uint32))  # a key, never made
        except ModelError as err:
            raise err.located(self.graph.file, self.graph.source) from None
        self.shapes = {n: tuple(v.shape) for n, v in out.items()}
        for n, v in b.static.items():
            self.shapes.setdefault(n, ())


class _Walk:
    """One pass over the graph in topological order."""

    def __init__(self, lw: Lowered, arrays, mode, u=None, key=None, fixed=None, discrete=None):
        self.lw, self.b, self.g = lw, lw.binding, lw.graph
        self.mode, self.u, self.key = mode, u, key
        self.env = {**self.b.static, **arrays}
        self.ev = Evaluator(self.env, self.g.functions)
        self.pieces = Pieces(self)
        self.terms = {}
        self.skip, self.skip_factors = set(), set()    # accounted for by a summed-out variable
        self.fixed = fixed or {}
        self.discrete = discrete or {}     # fixed values of summed-out variables (Gibbs)
        self.u_from_fixed = jnp.zeros(lw.dim) if fixed is not None else None
        self.slots = {s.name: s for s in lw.slots}

    def run(self) -> "_Walk":
        try:
            done = set()
            deferred = self._deferred_enumeration()
            for i, name in enumerate(self.g.order):
                if name in done or name in deferred or (self.mode == DENSITY and name in self.skip):
                    continue
                node = self.g.nodes[name]
                if node.pieces:
                    unit = self.g.units.get(name, (name,))
                    self.pieces.visit_unit(unit)
                    done.update(unit)
                    continue
                self._visit(i, name)
            for i, name in enumerate(self.g.order):     # summed-out variables, then what depends on them
                if name in deferred and name not in self.skip:
                    if name in self.lw.enumerated and self.g.nodes[name].pieces:
                        self._enumerate_chain(i, name)
                    else:
                        self._visit(i, name)
            if self.mode == SHAPES:
                for name in self.b.nodes_with(ROLE_LATENT):
                    if self.g.nodes[name].pieces:
                        self.pieces.record_latent(self.g.nodes[name])
            if self.mode == DENSITY:
                for j, f in enumerate(self.g.factors):
                    if j not in self.skip_factors:
                        self._factor(j, f)
            elif self.mode == SHAPES:
                for j, f in enumerate(self.g.factors):
                    self._factor(j, f)
        except ModelError as err:
            raise err.located(self.g.file, self.g.source) from None
        return self

    # ---------------------------------------------------------------- per node
    def _visit(self, i, name):
        node, role = self.g.nodes[name], self.b.roles[name]
        if self.mode == DENSITY and name not in self.b.needed and role != ROLE_OBSERVED:
            return
        if role in KNOWN_ROLES:
            if role == ROLE_OBSERVED and self.mode in (DENSITY, SHAPES):
                plan = self.lw.suffstats.get(name) if self.mode == DENSITY else None
                if plan is not None:
                    self.terms[(LIKELIHOOD, name)] = suffstats.log_likelihood(plan, self.ev, self.env)
                    return
                dist, args = self._dist(node)
                value = self.env[name]
                self._check_observed_shape(node, dist, args, value)
                if self.mode == DENSITY:
                    self.terms[(LIKELIHOOD, name)] = dist.summed_logpdf(value, *args)
                else:
                    self._find_suffstats(name, A.Name(name, node.span), value, node.dist)
            return
        if role == ROLE_DETERMINISTIC:
            self.env[name] = self.ev(node.expr)
            if self.mode == SHAPES and node.type is not None:
                self._check_declared(node, np.shape(self.env[name]))
            return
        sample_from_u = role == ROLE_LATENT and self.mode in (DENSITY, GENERATE)
        if sample_from_u and name in self.lw.enumerated:
            if name in self.discrete:
                self._fixed_discrete(node)
            else:
                self._enumerate(i, node)
            return
        if node.kind == FLAT:
            shape = self._declared_shape(node)
            c = self._constraint(node, None, None)
            if sample_from_u:
                self._from_u(node, c, shape)
            elif self.mode == SHAPES:
                self._record(node, c, shape)
                self.env[name] = _placeholder(self.key, shape, c.discrete)
            else:
                raise ModelError(f"`{name}` has no distribution, so it can be sampled but not simulated",
                                 node.span, hint=f"give it a prior (`{name} ~ ...`) or supply it as data")
            return
        dist, args = self._dist(node)
        batch, event = self._value_shape(node, dist, args)
        c = self._constraint(node, dist, args)
        if sample_from_u:
            x = self._from_u(node, c, batch + event)
            if self.mode == DENSITY:
                self.terms[(PRIOR, name)] = dist.summed_logpdf(x, *args)
            return
        if self.mode == SHAPES:
            self._record(node, c, batch + event)
            self.env[name] = _placeholder(self.key, batch + event, dist.discrete)
            return
        self.env[name] = self._draw(node, dist, args, batch, event, jax.random.fold_in(self.key, i))

    def _find_suffstats(self, label, value_expr, value, call):
        """Record a ``suffstats.Plan`` when an observation ``~ normal(...)`` is linear in the
        parameters (``label``: the node's name, or ``observe@J`` for the J-th factor)."""
        if call.func != "normal" or len(call.args) != 2 or not suffstats.enabled():
            return
        inline = {n: d.expr for n, d in self.g.nodes.items()
                  if self.b.roles[n] == ROLE_DETERMINISTIC and not d.pieces and d.expr is not None}
        plan = suffstats.find(label, value_expr, value, call.args[0], call.args[1], self.ev, inline)
        if plan is not None:
            self.lw.suffstats[label] = plan

    def _find_loop_suffstats(self, j, f):
        """``for i in range(lo, hi): y[i] ~ normal(...)`` through sufficient statistics, when its
        whole-vector form is exact and linear in the parameters (``suffstats.vectorise_loop``)."""
        if f.kind == "observe" and len(f.loops) == 1 and f.dist.func == "normal" and suffstats.enabled():
            found = suffstats.vectorise_loop(f.loops[0].var, self.pieces.ranges(f.loops)[0], f.value, f.dist,
                                             self.ev)
            if found is not None:
                self._find_suffstats(f"observe@{j}", *found)

    def _fixed_discrete(self, node):
        value = self.discrete[node.name]
        self.env[node.name] = value
        if self.mode == DENSITY:
            if node.kind == FLAT:
                return
            dist, args = self._dist(node)
            self.terms[(PRIOR, node.name)] = dist.summed_logpdf(value, *args)

    def _deferred_enumeration(self) -> set:
        """A summed-out variable and its descendants are evaluated after everything else, so that
        every other parent of its descendants is known when its support is enumerated."""
        if self.mode not in (DENSITY, GENERATE):
            return set()
        out = set()
        for name in self.lw.enumerated:
            if name in self.discrete:
                continue
            out.add(name)
            out.update(descendants(self.g, name))
        return out

    def _enumerate_chain(self, i, name):
        if self.mode == DENSITY:
            sum_out_chain(self, name)
        else:
            draw_chain(self, name, jax.random.fold_in(self.key, i))

    def _enumerate(self, i, node):
        if node.kind == FLAT:
            dist, args, batch = None, [], self._declared_shape(node)
        else:
            dist, args = self._dist(node)
            batch, _ = self._value_shape(node, dist, args)
        if self.mode == DENSITY:
            sum_out(self, node.name, dist, args, batch)
        else:
            draw_conditional(self, node.name, dist, args, batch, jax.random.fold_in(self.key, i))

    def _from_u(self, node, c, shape):
        slot = self.slots.get(node.name)
        bij = C.bijector(c)
        if self.mode == GENERATE and node.name in self.fixed:
            x = jnp.broadcast_to(jnp.asarray(self.fixed[node.name], dtype=float), shape)
            u = bij.inverse(x)
            self.u_from_fixed = self.u_from_fixed.at[slot.offset:slot.offset + slot.size].set(jnp.ravel(u))
            self.env[node.name] = x
            return x
        u = self.u[slot.offset:slot.offset + slot.size].reshape(slot.ushape)
        x = bij.forward(u)
        if self.mode == DENSITY:
            self.terms[(JACOBIAN, node.name)] = bij.log_det_jacobian(u)
        self.env[node.name] = x
        return x

    def _record(self, node, c, shape):
        if self.b.roles[node.name] == ROLE_LATENT:
            if c.discrete:
                self.lw.enumerated[node.name] = support_values(node, c)
                return
            self.lw._ushapes[node.name] = tuple(C.bijector(c).unconstrained_shape(tuple(shape)))

    def _draw(self, node, dist, args, batch, event, key):
        t = node.type
        if t is not None and (t.lower is not None or t.upper is not None) and not dist.discrete and not event:
            bounds = tuple(self.ev(b) if b is not None else None for b in (t.lower, t.upper))
            return draw_within(node, bounds, dist, args, batch, key)
        try:
            if t is not None and t.base in ("ordered", "positive_ordered"):
                return sample_ordered(dist, args, batch, event, key, positive=t.base == "positive_ordered")
            return dist.sample(key, batch, *args, event_shape=event)
        except (TypeError, ValueError) as err:
            raise ModelError(f"cannot draw `{node.name}` from `{dist.name}` with argument shapes "
                             f"{[np.shape(a) for a in args]}: {err}", node.dist.span) from None

    # ---------------------------------------------------------------- factors
    def _factor(self, j, f):
        label = f"target += (line {f.span.line})" if f.kind == "target" else f"observation (line {f.span.line})"
        plan = self.lw.suffstats.get(f"observe@{j}") if self.mode == DENSITY else None
        if plan is not None:
            self.terms[(LIKELIHOOD, label)] = suffstats.log_likelihood(plan, self.ev, self.env)
            return

        def term(ev):
            if f.kind == "target":
                return jnp.sum(ev(f.value))
            dist, args = combinators.resolve(f.dist, ev)
            value = ev(f.value)
            if self.mode == SHAPES:
                self._check_observed_shape(None, dist, args, value, f.span)
                if f.kind == "observe" and not f.loops and is_concrete(value):
                    self._find_suffstats(f"observe@{j}", f.value, value, f.dist)
                if not f.loops:     # only its shape is needed: staged, so the data's part compiles nothing
                    return staged_shape(lambda v, *a: dist.summed_logpdf(v, *a), value, *args)
            return dist.summed_logpdf(value, *args)

        if self.mode == SHAPES and f.loops:
            self.pieces.check_indices([f.value, f.dist], f.loops, f.span)
            self._find_loop_suffstats(j, f)
        total = loop_factor(self, f, term) if f.loops else term(self.ev)
        self.terms[(LIKELIHOOD, label)] = total

    # ---------------------------------------------------------------- helpers
    def _dist(self, node):
        return self._call_dist(node.dist)

    def _call_dist(self, call: A.Call):
        return combinators.resolve(call, self.ev)

    def _declared_shape(self, node) -> tuple:
        t = node.type
        exprs = list(t.shape)
        if STRUCTURED.get(t.base) == 2 and len(exprs) == 1:
            exprs = exprs * 2
        out = []
        for e in exprs:
            if isinstance(e, A.Name) and e.id not in self.env:
                raise ModelError(f"the size `{e.id}` is not known: no data has it as a dimension", e.span,
                                 hint=f"supply `{e.id}` in the data, or declare data with shape `[{e.id}]`")
            out.append(static_int(self.ev(e), "a size", getattr(e, "span", node.span)))
        return tuple(out)

    def batch_event(self, dist, args, span):
        """Batch shape (broadcast of the arguments) and event shape of one draw."""
        shapes = [tuple(np.shape(a)) for a in args]
        for param, shape, d in zip(dist.params, shapes, dist.param_event_dims):
            if len(shape) < d and dist.name in DISTRIBUTIONS:     # combinators broadcast scalars
                raise ModelError(f"`{param}` of `{dist.name}` must be a {'vector' if d == 1 else 'matrix'}, "
                                 f"got shape {shape}", span)
        try:
            batches = [s[: len(s) - d] if d else s for s, d in zip(shapes, dist.param_event_dims)]
            batch = tuple(np.broadcast_shapes(*batches)) if batches else ()
            event = dist.event_shape(*shapes)
        except ValueError:
            raise ModelError(f"the arguments of `{dist.name}` have shapes that do not broadcast: "
                             + ", ".join(map(str, shapes)), span) from None
        return batch, (tuple(event) if event is not None else None)

    def _value_shape(self, node, dist, args):
        batch, event = self.batch_event(dist, args, node.dist.span)
        if node.type is not None:
            declared = self._declared_shape(node)
            if event is None:
                event = declared[len(declared) - dist.event_dim:] if dist.event_dim else ()
            if len(declared) < len(event) or declared[len(declared) - len(event):] != tuple(event):
                raise ModelError(f"`{node.name}` is declared with shape {declared} but a draw of "
                                 f"`{dist.name}` has shape {tuple(event)}", node.type.span)
            want = declared[: len(declared) - len(event)]
            try:
                ok = tuple(np.broadcast_shapes(batch, want)) == want
            except ValueError:
                ok = False
            if not ok:
                raise ModelError(f"`{node.name}` is declared with shape {declared} but its distribution has "
                                 f"shape {batch + tuple(event)}", node.dist.span,
                                 hint="the arguments' shapes must fit the declared shape")
            batch = want
        elif event is None:
            raise ModelError(f"`{node.name}` needs a declared type to know its size, e.g. `{node.name}: "
                             f"corr_cholesky[K] ~ {dist.name}(...)`", node.span)
        return tuple(batch), tuple(event)

    def _check_declared(self, node, shape):
        declared = self._declared_shape(node)
        if tuple(shape) != declared:
            raise ModelError(f"`{node.name}` is declared with shape {declared} but its value has shape "
                             f"{tuple(shape)}", node.type.span)

    def _check_observed_shape(self, node, dist, args, value, span=None):
        shapes = [tuple(np.shape(a)) for a in args]
        batches = [s[: len(s) - d] if d else s for s, d in zip(shapes, dist.param_event_dims)]
        event_dim = dist.event_dim
        vshape = tuple(np.shape(value))
        vbatch = vshape[: len(vshape) - event_dim] if event_dim else vshape
        where = node.dist.span if node is not None else span
        what = f"`{node.name}`" if node is not None else "the observed value"
        try:
            full = tuple(np.broadcast_shapes(vbatch, *batches))
        except ValueError:
            raise ModelError(f"{what} has shape {vshape} but `{dist.name}` has arguments of shapes "
                             + ", ".join(map(str, shapes)), where,
                             hint="the arguments must broadcast to the shape of the value") from None
        if full != vbatch:
            raise ModelError(f"{what} has shape {vshape} but its distribution has shape {full}", where,
                             hint="the value would be counted more than once; check the arguments' shapes")
        if node is not None and node.type is not None:
            self._check_declared(node, vshape)

    def _constraint(self, node, dist, args) -> C.Constraint:
        t = node.type
        if t is not None and t.base in STRUCTURED:
            c = getattr(C, t.base)
        elif dist is not None:
            c = dist.support(*args)
        elif t is not None and t.base == "int":
            c = C.integer
        else:
            c = C.real
        if t is not None and (t.lower is not None or t.upper is not None):
            lo = self.ev(t.lower) if t.lower is not None else None
            hi = self.ev(t.upper) if t.upper is not None else None
            try:
                c = C.narrow(c, lo, hi)
            except ValueError:
                raise ModelError(f"`{node.name}` takes values in a {c.kind.replace('_', ' ')}, which bounds "
                                 "cannot narrow", t.span, hint="remove the bounds from the declaration") from None
        return c


def _placeholder(key, shape, discrete):
    """A traced stand-in value of the right shape, for shape inference. Built from the traced key
    alone: under ``ensure_compile_time_eval`` anything from constants (a ``fold_in`` index, the
    bounds of ``jax.random.uniform``) would be computed eagerly, an XLA compilation each."""
    x = jnp.broadcast_to(key[0].astype(jnp.result_type(float)), tuple(shape))
    return x.astype(int) if discrete else x


def jit_log_density(lw: Lowered):
    """A jitted ``(u, arrays) -> log density`` (the sampler jits its own chunk instead)."""
    return jax.jit(lw.log_density)
