"""Lowering of element-wise definitions: `for` loops, piecewise arrays and recurrences.

A node defined by pieces (`x[0] = ...`, `for t in range(1, T) { x[t] = ... }`) is evaluated as
a whole array. Independent iterations are vectorised with `jax.vmap` over the loop's grid; a
recurrence (an element reads other elements of arrays computed in the same loop: AR, ARMA,
GARCH, state-space models) runs as one `lax.scan` over the outer loop. Whether a unit needs a
scan depends on the mode: in the log density every sampled or observed element is known, so
only deterministic recurrences scan; when simulating, stochastic recurrences scan too.
Loops are never unrolled in Python."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import ast as A
from . import combinators
from . import constraints as C
from .binding import KNOWN_ROLES, ROLE_LATENT
from .errors import ModelError
from .evaluate import Evaluator, is_concrete, staged_shape, static_int
from .functions import is_numpy

_CONSTANT_KINDS = ("real", "positive", "unit_interval", "simplex", "ordered", "positive_ordered",
                   "corr_cholesky", "cov_matrix", "lower", "upper", "interval")


def grid_map(fn, ranges, ops=(), vals=()):
    """vmap ``fn(loop_values, operands)`` over the grid of ``ranges`` (outermost first); operands
    carry the grid as leading axes."""
    if not ranges:
        return fn(vals, ops)

    def one(v, *o):
        return grid_map(fn, ranges[1:], o, vals + (v,))

    return jax.vmap(one)(np.asarray(ranges[0]), *ops)


class Pieces:
    """Evaluates piecewise nodes and loop factors inside one graph walk (lower._Walk)."""

    def __init__(self, walk):
        self.w = walk
        self.lw = walk.lw

    # ------------------------------------------------------------------ static facts
    def ranges(self, loops) -> list:
        out = []
        outer = set()
        for lp in loops:
            for e in (lp.start, lp.stop):
                for ref in A.free_names(e):
                    if ref.id in outer:
                        raise ModelError("loop bounds cannot depend on an enclosing loop's variable", ref.span)
            lo = static_int(self.w.ev(lp.start), "a loop bound", lp.span)
            hi = static_int(self.w.ev(lp.stop), "a loop bound", lp.span)
            out.append(np.arange(lo, max(lo, hi)))
            outer.add(lp.var)
        return out

    def _iteration_evaluator(self, loops, vals):
        env = dict(self.w.env)
        env.update({lp.var: v for lp, v in zip(loops, vals)})
        probe = {lp.var: static_int(self.w.ev(lp.start), "a loop bound", lp.span) for lp in loops}
        return Evaluator(env, self.w.g.functions, probe)

    def concrete_indices(self, piece) -> tuple:
        """The elements a piece defines, as integer arrays over its grid (computed once)."""
        cache = self.lw.piece_index
        if piece.id in cache:
            return cache[piece.id]
        ranges = self.ranges(piece.loops)
        shape = tuple(len(r) for r in ranges)
        env = dict(self.w.env)
        for axis, (lp, r) in enumerate(zip(piece.loops, ranges)):
            env[lp.var] = r.reshape([-1 if k == axis else 1 for k in range(len(ranges))])
        ev = Evaluator(env, self.w.g.functions)
        idx = []
        for e in piece.indices:
            v = ev(e)
            if isinstance(v, jax.core.Tracer):
                raise ModelError("the element an index names must be known from the data", e.span)
            arr = np.asarray(v)
            if not np.issubdtype(arr.dtype, np.integer):
                raise ModelError("an index must be an integer (indices are 0-based)", e.span)
            arr = np.broadcast_to(arr, shape)
            if arr.size and arr.min() < 0:
                raise ModelError(f"this piece defines element {int(arr.min())}; indices are 0-based and "
                                 "cannot be negative", e.span)
            idx.append(arr)
        cache[piece.id] = tuple(idx)
        return cache[piece.id]

    def extent(self, node) -> tuple:
        if node.name in self.lw.extent:
            return self.lw.extent[node.name]
        rank = {len(p.indices) for p in node.pieces}
        if len(rank) != 1:
            raise ModelError(f"the pieces of `{node.name}` use different numbers of indices", node.pieces[1].span)
        ext = [0] * rank.pop()
        for p in node.pieces:
            for axis, arr in enumerate(self.concrete_indices(p)):
                if arr.size:
                    ext[axis] = max(ext[axis], int(arr.max()) + 1)
        self.lw.extent[node.name] = tuple(ext)
        return tuple(ext)

    def check_coverage(self, node, full_ok: bool) -> None:
        """Each element defined at most once; with ``full_ok`` False, every element exactly once."""
        ext = self.extent(node)
        count = np.zeros(ext, dtype=int)
        first = np.zeros(ext, dtype=int)
        for p in node.pieces:
            idx = self.concrete_indices(p)
            if not idx or not idx[0].size:
                continue
            flat = tuple(a.ravel() for a in idx)
            already = count[flat] > 0
            if already.any():
                k = int(np.argmax(already))
                where = ", ".join(str(int(a[k])) for a in flat)
                raise ModelError(f"`{node.name}[{where}]` is defined twice (first at line "
                                 f"{int(first[tuple(a[k] for a in flat)])})", p.span,
                                 hint="each element of an array is defined exactly once")
            np.add.at(count, flat, 1)
            first[flat] = p.span.line
            if np.any(np.bincount(np.ravel_multi_index(flat, ext), minlength=count.size) > 1):
                raise ModelError(f"this piece defines some element of `{node.name}` twice", p.span)
        if not full_ok and (count == 0).any():
            gap = ", ".join(str(int(i)) for i in np.argwhere(count == 0)[0])
            raise ModelError(f"`{node.name}[{gap}]` is never defined", node.span,
                             hint="every element of an array defined piecewise needs a definition")

    def check_indices(self, exprs, loops, span) -> None:
        """Shape pass: every index that moves with a loop stays in range over the whole loop."""
        if not loops:
            return
        ranges = self.ranges(loops)
        if any(len(r) == 0 for r in ranges):
            return
        env = dict(self.w.env)
        for axis, (lp, r) in enumerate(zip(loops, ranges)):
            env[lp.var] = r.reshape([-1 if k == axis else 1 for k in range(len(ranges))])
        loop_vars = {lp.var for lp in loops}
        ev = Evaluator(env, self.w.g.functions)
        for expr in exprs:
            if expr is None:
                continue
            for e in A.walk(expr):
                if not (isinstance(e, A.Index) and isinstance(e.base, A.Name)):
                    continue
                base = self.w.env.get(e.base.id)
                shape = np.shape(base) if base is not None else self.lw.extent.get(e.base.id)
                if shape is None:
                    continue
                for axis, idx in enumerate(e.indices):
                    if isinstance(idx, A.Slice) or axis >= len(shape):
                        continue
                    if not {n.id for n in A.free_names(idx)} & loop_vars:
                        continue
                    try:
                        v = ev(idx)
                    except ModelError:
                        continue
                    if isinstance(v, jax.core.Tracer) or not np.issubdtype(np.asarray(v).dtype, np.integer):
                        continue
                    arr = np.broadcast_to(np.asarray(v), tuple(len(r) for r in ranges))
                    bad = (arr < 0) | (arr >= shape[axis])
                    if bad.any():
                        where = tuple(int(k) for k in np.argwhere(bad)[0])
                        at = ", ".join(f"{lp.var} = {int(r[k])}" for lp, r, k in zip(loops, ranges, where))
                        raise ModelError(f"index {int(arr[where])} is out of range for an axis of length "
                                         f"{shape[axis]} (when {at})", getattr(idx, "span", span),
                                         hint="indices are 0-based; check the loop's range")

    # ------------------------------------------------------------------ units
    def visit_unit(self, names) -> None:
        from .lower import DENSITY, GENERATE, SHAPES
        w = self.w
        nodes = [w.g.nodes[n] for n in names]
        if w.mode == SHAPES:
            for n in nodes:
                for p in n.pieces:
                    self.check_indices([p.expr, p.dist], p.loops, p.span)
        known, computed = [], []
        for n in nodes:
            role = w.b.roles[n.name]
            if w.mode == DENSITY and n.name not in w.b.needed and role not in KNOWN_ROLES:
                continue
            if role in KNOWN_ROLES:
                if w.mode == SHAPES:
                    self._check_known_shape(n)
                known.append(n)
            elif role == ROLE_LATENT and n.name in w.discrete:
                w.env[n.name] = w.discrete[n.name]          # a discrete chain fixed by a Gibbs sweep
                known.append(n)
            elif role == ROLE_LATENT and w.mode in (DENSITY, GENERATE):
                self._latent_from_u(n)
                known.append(n)
            else:
                computed.append(n)
        if computed:
            for n in computed:
                self.extent(n)
                self.check_coverage(n, full_ok=False)
            cyclic = self._cyclic(computed)
            if cyclic:
                self._scan(computed)
            else:
                for n in self._acyclic_order(computed):
                    self._vectorised(n)
        if w.mode in (DENSITY, SHAPES):
            for n in known:
                if n.kind == "stochastic":
                    self._density(n)

    def _reads(self, node, names) -> set:
        found = set()
        for p in node.pieces:
            for e in (p.expr, p.dist):
                if e is not None:
                    found |= {r.id for r in A.free_names(e) if r.id in names}
        return found

    def _cyclic(self, computed) -> bool:
        names = {n.name for n in computed}
        graph = {n.name: self._reads(n, names) for n in computed}
        if any(n in deps for n, deps in graph.items()):
            return True
        seen, stack_set = set(), set()

        def visit(n):
            seen.add(n)
            stack_set.add(n)
            for m in graph[n]:
                if m in stack_set or (m not in seen and visit(m)):
                    return True
            stack_set.discard(n)
            return False

        return any(visit(n) for n in graph if n not in seen)

    def _acyclic_order(self, computed) -> list:
        names = {n.name for n in computed}
        done, out = set(), []
        pending = list(computed)
        while pending:
            for n in pending:
                if self._reads(n, names) <= done:
                    out.append(n)
                    done.add(n.name)
                    pending.remove(n)
                    break
        return out

    # ------------------------------------------------------------------ evaluation
    def _element(self, piece, ev, key):
        """One element's value: the expression, or a draw from the distribution."""
        if piece.expr is not None:
            v = ev(piece.expr)
            return np.asarray(v) if is_numpy(v) else jnp.asarray(v)
        dist, args = combinators.resolve(piece.dist, ev)
        batch, event = self.w.batch_event(dist, args, piece.dist.span)
        from .lower import SHAPES, _placeholder
        if self.w.mode == SHAPES:
            self._record_support(piece, dist, args)
            return _placeholder(key, batch + event, dist.discrete)
        return dist.sample(key, batch, *args, event_shape=event)

    def _piece_key(self, piece, vals):
        if self.w.key is None or piece.dist is None:
            return None
        from .lower import SHAPES
        if self.w.mode == SHAPES:
            return self.w.key  # shape inference draws nothing (see lower._placeholder)
        key = jax.random.fold_in(self.w.key, 100003 + piece.id)
        for v in vals:
            key = jax.random.fold_in(key, v)
        return key

    def _vectorised(self, node) -> None:
        values = []
        for p in node.pieces:
            ranges = self.ranges(p.loops)
            if any(len(r) == 0 for r in ranges):
                continue

            def one(vals, ops, p=p):
                return self._element(p, self._iteration_evaluator(p.loops, vals), self._piece_key(p, vals))

            values.append((p, grid_map(one, ranges)))
        elem = self._elem_shape(node, [(p, v.shape[len(p.loops):]) for p, v in values])
        full = jnp.zeros(self.extent(node) + elem, dtype=self._dtype(node, [v for _, v in values]))
        for p, v in values:
            full = full.at[self.concrete_indices(p)].set(v.astype(full.dtype))
        self.w.env[node.name] = full

    def _elem_shape(self, node, shapes) -> tuple:
        found = {tuple(s) for _, s in shapes}
        if len(found) > 1:
            raise ModelError(f"the elements of `{node.name}` have different shapes: "
                             + ", ".join(map(str, sorted(found))), node.pieces[-1].span)
        elem = found.pop() if found else self.lw.elem_shape.get(node.name, ())
        self.lw.elem_shape[node.name] = elem
        return elem

    def _dtype(self, node, values):
        kinds = {jnp.issubdtype(v.dtype, jnp.integer) for v in values}
        return jnp.int64 if kinds == {True} and jax.config.jax_enable_x64 else (
            jnp.int32 if kinds == {True} else jnp.result_type(float))

    def _scan(self, computed) -> None:
        loops0 = {p.loops[0] for n in computed for p in n.pieces if p.loops}
        if len(loops0) != 1:
            raise ModelError(f"a recurrence must be defined in a single loop (`{computed[0].name}` uses several)",
                             computed[0].span)
        outer = loops0.pop()
        w = self.w
        carry = {}
        for n in computed:      # start from zeros; element shapes from fixed pieces (else scalars)
            fixed = [p for p in n.pieces if not p.loops]
            elem = self.lw.elem_shape.get(n.name)
            if elem is None:
                elem = ()
                if fixed:
                    probe = {**w.env, **{m.name: np.zeros(self.extent(m)) for m in computed}}
                    elem = tuple(staged_shape(lambda: jnp.asarray(
                        Evaluator(probe, w.g.functions)(fixed[0].expr) if fixed[0].expr is not None
                        else 0.0)).shape)
                self.lw.elem_shape[n.name] = elem
            # numpy zeros: a constant, where jnp.zeros would be an XLA compilation in the shape pass
            carry[n.name] = np.zeros(self.extent(n) + elem, dtype=self._scan_dtype(n))
        ordered = sorted((p for n in computed for p in n.pieces), key=lambda p: p.id)
        owner = {p.id: n for n in computed for p in n.pieces}
        for p in ordered:
            if not p.loops:
                carry = self._write(carry, owner[p.id], p, (), w.env)
        loop_pieces = [p for p in ordered if p.loops]
        t_values = self.ranges((outer,))[0]

        def step(state, t):
            for p in loop_pieces:
                state = self._write(state, owner[p.id], p, (t,), w.env)
            return state, None

        if len(t_values):
            carry, _ = jax.lax.scan(step, carry, t_values)
        for n in computed:
            w.env[n.name] = carry[n.name]

    def _scan_dtype(self, node):
        if node.kind == "stochastic":
            dist = node.pieces[0].dist
            from .distributions import DISTRIBUTIONS
            d = DISTRIBUTIONS.get(dist.func)
            if d is not None and d.discrete:
                return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        return jnp.result_type(float)

    def _write(self, state, node, piece, outer_vals, env):
        """Compute a piece's elements for the given outer loop value(s) and write them."""
        inner = piece.loops[len(outer_vals):]
        ranges = self.ranges(inner)

        def one(vals, ops):
            all_vals = tuple(outer_vals) + tuple(vals)
            ev = Evaluator({**env, **state, **{lp.var: v for lp, v in zip(piece.loops, all_vals)}},
                           self.w.g.functions,
                           {lp.var: static_int(self.w.ev(lp.start), "a loop bound", lp.span) for lp in piece.loops})
            idx = tuple(np.asarray(i) if is_concrete(i) else jnp.asarray(i) for i in (ev(e) for e in piece.indices))
            return idx, self._element(piece, ev, self._piece_key(piece, all_vals))

        if any(len(r) == 0 for r in ranges):
            return state
        idx, value = grid_map(one, ranges)
        arr = state[node.name]
        try:
            if isinstance(arr, np.ndarray) and is_concrete(value) and all(map(is_concrete, idx)):
                arr = arr.copy()                # known from the data: written in numpy
                arr[idx] = np.asarray(value)
                return {**state, node.name: arr}
            if isinstance(arr, np.ndarray) and all(is_concrete(i) and np.ndim(i) == 0 for i in idx):
                mask = np.zeros(arr.shape, bool)        # one element of a numpy array: a select, which
                mask[tuple(int(i) for i in idx)] = True  # (unlike a scatter) compiles nothing eagerly
                return {**state, node.name: jnp.where(mask, jnp.asarray(value).astype(arr.dtype), arr)}
            arr = jnp.asarray(arr).at[idx].set(jnp.asarray(value).astype(arr.dtype))
        except (TypeError, ValueError):
            raise ModelError(f"an element of `{node.name}` has shape {jnp.shape(value)[len(inner):]} but the array "
                             f"expects {arr.shape[len(piece.indices):]}", piece.span,
                             hint="elements of a recurrence are scalars unless a fixed piece (like "
                                  f"`{node.name}[0] = ...`) shows their shape") from None
        return {**state, node.name: arr}

    # ------------------------------------------------------------------ known values
    def _density(self, node) -> None:
        from .lower import DENSITY, LIKELIHOOD, PRIOR
        w = self.w
        value = jnp.asarray(w.env[node.name])
        total = jnp.zeros(())
        for p in node.pieces:
            ranges = self.ranges(p.loops)
            if any(len(r) == 0 for r in ranges):
                continue
            idx = self.concrete_indices(p)
            for axis, a in enumerate(idx):
                if a.size and a.max() >= value.shape[axis]:
                    raise ModelError(f"this piece defines `{node.name}` element {int(a.max())} along axis {axis}, "
                                     f"but `{node.name}` has {value.shape[axis]}", p.span)
            elems = value[idx] if idx else value

            def one(vals, ops, p=p):
                ev = self._iteration_evaluator(p.loops, vals)
                dist, args = combinators.resolve(p.dist, ev)
                return jnp.sum(dist.logpdf(ops[0], *args))

            total = total + jnp.sum(grid_map(one, ranges, (elems,)))
        if w.mode == DENSITY:
            part = LIKELIHOOD if w.b.roles[node.name] in KNOWN_ROLES else PRIOR
            w.terms[(part, node.name)] = total

    def _check_known_shape(self, node) -> None:
        value = self.w.env[node.name]
        ext = self.extent(node)
        self.check_coverage(node, full_ok=True)
        for axis, n in enumerate(ext):
            if axis >= np.ndim(value) or n > np.shape(value)[axis]:
                raise ModelError(f"the pieces of `{node.name}` define {n} elements along axis {axis} but the "
                                 f"data has shape {np.shape(value)}", node.pieces[0].span)

    # ------------------------------------------------------------------ latent arrays
    def _record_support(self, piece, dist, args) -> None:
        node_name = next(n for n, node in self.w.g.nodes.items() if piece in node.pieces)
        if self.w.b.roles[node_name] != ROLE_LATENT:
            return
        c = dist.support(*args)
        if c.discrete:
            from .enumerate import support_values
            values = support_values(self.w.g.nodes[node_name], c)
            prev = self.lw.enumerated.get(node_name)
            if prev is not None and not np.array_equal(prev, values):
                raise ModelError(f"the elements of `{node_name}` have different supports", piece.span)
            self.lw.enumerated[node_name] = values
            return
        bounds = tuple(b for b in (c.lower, c.upper) if b is not None)
        if c.kind not in _CONSTANT_KINDS or any(isinstance(b, jax.core.Tracer) for b in bounds):
            raise ModelError(f"the support of `{node_name}` depends on the loop or on parameters, which a latent "
                             "array defined element-wise cannot have yet", piece.dist.span,
                             hint="sample a standard variable and transform it, e.g. `z[t] ~ normal(0, 1)`")
        prev = self.lw.piece_constraint.get(node_name)
        if prev is not None and (prev.kind, _key(prev.lower), _key(prev.upper)) != (c.kind, _key(c.lower),
                                                                                      _key(c.upper)):
            raise ModelError(f"the elements of `{node_name}` have different supports", piece.span)
        self.lw.piece_constraint[node_name] = c

    def record_latent(self, node) -> None:
        """After the shape pass: the latent array's unconstrained shape."""
        if node.name in self.lw.enumerated:
            return
        c = self.lw.piece_constraint.get(node.name, C.real)
        shape = tuple(self.w.env[node.name].shape)
        self.lw._ushapes[node.name] = tuple(C.bijector(c).unconstrained_shape(shape))

    def _latent_from_u(self, node) -> None:
        from .lower import DENSITY, JACOBIAN
        w = self.w
        slot = w.slots[node.name]
        c = self.lw.piece_constraint.get(node.name, C.real)
        bij = C.bijector(c)
        u = w.u[slot.offset:slot.offset + slot.size].reshape(slot.ushape)
        w.env[node.name] = bij.forward(u)
        if w.mode == DENSITY:
            w.terms[(JACOBIAN, node.name)] = bij.log_det_jacobian(u)


def _key(b):
    if b is None:
        return None
    arr = np.asarray(b)
    return arr.tobytes() + str(arr.shape).encode()


def loop_factor(walk, f, fn) -> jax.Array:
    """Sum of ``fn(evaluator)`` over a factor's loops (vectorised)."""
    pieces = walk.pieces
    ranges = pieces.ranges(f.loops)
    if any(len(r) == 0 for r in ranges):
        return jnp.zeros(())

    def one(vals, ops):
        return jnp.sum(fn(pieces._iteration_evaluator(f.loops, vals)))

    return jnp.sum(grid_map(one, ranges))


def size_of(shape) -> int:
    return int(math.prod(shape))
