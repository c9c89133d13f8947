"""The `ppl` command: check, sample, prior, summary, graph, plot (and the commands of
§6). Errors in a model or its data print
`file:line:col: error: ...`, the line and a caret, and exit with status 2 (no traceback)."""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

from .model import MASS_MATRICES

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130   # Ctrl-C (128 + SIGINT); `ppl sample` still writes the draws made so far


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ppl", description="GM: a probabilistic programming language.")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, data_required=False, output=True):
        sp.add_argument("model", help="the .gm model file")
        sp.add_argument("--data", "-d", required=data_required, help="data file (.json or .npz)")
        sp.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sp.add_argument("--strict", action="store_true", help="unknown data names are errors, not warnings")
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        sp.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
        if output:
            sp.add_argument("-o", "--output", help="write draws to FILE (.csv, .json, or .nc with ArviZ)")

    c = sub.add_parser("check", help="parse and check a model; print its graph")
    common(c, output=False)
    c.add_argument("--print-graph", action="store_true", help="also print the graph IR (parents of each node)")

    s = sub.add_parser("sample", help="MCMC (NUTS, HMC or random-walk Metropolis) on a model and its data")
    common(s)
    s.add_argument("--chains", type=int, default=4)
    s.add_argument("--warmup", type=int, default=1000)
    s.add_argument("--draws", type=int, default=1000)
    s.add_argument("--algorithm", default="nuts", choices=["nuts", "hmc", "mh", "gibbs"],
                   help="nuts (default), hmc, mh, or gibbs (NUTS within exact Gibbs updates of discrete latents)")
    s.add_argument("--devices", type=int, default=None,
                   help="split chains across this many devices (default: on CPU one host device per chain "
                        "where the cores allow, on GPU one device)")
    s.add_argument("--shard-data", action="store_true", help="with --devices: also split the data by rows")
    s.add_argument("--coordinator", metavar="HOST:PORT",
                   help="several hosts: the address of process 0 (jax.distributed); each process runs its own "
                        "chains on its own devices and writes -o with .processI before the extension")
    s.add_argument("--num-processes", type=int, default=None, help="with --coordinator: how many processes")
    s.add_argument("--process-id", type=int, default=None, help="with --coordinator: this process's index")
    s.add_argument("--distributed", action="store_true",
                   help="several hosts, found by jax.distributed from the cluster (SLURM, Open MPI, ...)")
    s.add_argument("--keep-stuck-chains", action="store_true",
                   help="do not move chains stuck in a negligible mode halfway through warm-up")
    s.add_argument("--target-accept", type=float, default=None, help="default 0.8 (0.234 for mh)")
    s.add_argument("--max-depth", type=int, default=10, help="NUTS tree depth (hmc: at most 2^depth steps)")
    s.add_argument("--dense", action="store_true", help="adapt a dense mass matrix (mh: proposal covariance)")
    s.add_argument("--mass-matrix", choices=MASS_MATRICES, default=None,
                   help="diag (default: Stan's window variances), dense (= --dense), fisher (nuts, gibbs: "
                        "diagonal from sqrt(Var[x] / Var[grad log p]), as nutpie) or lowrank (nuts, gibbs: "
                        "nutpie's low-rank metric)")
    s.add_argument("--path-length", type=float, default=None, help="hmc: integration time (default 2)")
    s.add_argument("--num-steps", type=int, default=None, help="hmc: fixed number of leapfrog steps")

    v = sub.add_parser("vi", help="variational inference (ADVI or Pathfinder); draws from the approximation")
    common(v)
    v.add_argument("--family", default="meanfield", choices=["meanfield", "fullrank", "pathfinder"])
    v.add_argument("--draws", type=int, default=1000)
    v.add_argument("--max-iter", type=int, default=10000)
    v.add_argument("--learning-rate", type=float, default=0.1, help="Adam's learning rate")
    v.add_argument("--tol-rel-obj", type=float, default=0.01, help="relative ELBO change that stops ADVI")

    op = sub.add_parser("optimize", help="MAP or maximum likelihood; -o writes JSON that --data accepts")
    common(op, output=False)
    op.add_argument("--method", default="lbfgs", choices=["lbfgs", "adam"])
    op.add_argument("--mle", action="store_true", help="maximum likelihood (the likelihood alone)")
    op.add_argument("--restarts", type=int, default=1, help="random starts; the best is kept")
    op.add_argument("--max-iter", type=int, default=None)
    op.add_argument("-o", "--output", help="write the estimate as JSON (latent nodes + data inputs and sizes)")

    pr = sub.add_parser("prior", help="ancestral simulation of every node the data does not fix")
    common(pr)
    pr.add_argument("--draws", type=int, default=1000)

    sm = sub.add_parser("summary", help="the summary table of saved draws (.csv, .json or .nc)")
    sm.add_argument("file")
    sm.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    cb = sub.add_parser("combine", help="stack the chains of several saved runs (one per host) into one file")
    cb.add_argument("files", nargs="+", help="saved draws (.csv, .json or .nc) of the same model")
    cb.add_argument("-o", "--output", help="write the combined draws to FILE (.csv, .json, or .nc with ArviZ)")
    cb.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    gr = sub.add_parser("graph", help="the model's DAG as Graphviz DOT (-o draws .svg/.png/.pdf or writes .dot)")
    gr.add_argument("model", help="the .gm model file")
    gr.add_argument("--data", "-d", help="data file: decides which nodes are observed (shaded)")
    gr.add_argument("--strict", action="store_true", help="unknown data names are errors, not warnings")
    gr.add_argument("-o", "--output", help="write FILE (.svg, .png, .pdf with Graphviz's dot; .dot text)")
    gr.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    pl = sub.add_parser("plot", help="trace and density plots of saved draws, to PNG (needs matplotlib)")
    pl.add_argument("file", help="saved draws (.csv, .json or .nc)")
    pl.add_argument("-o", "--output", help="the PNG to write (default: FILE with .png)")
    pl.add_argument("--vars", help="comma-separated variables or columns, e.g. mu,tau,theta[0]")
    pl.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    sb = sub.add_parser("sbc", help="simulation-based calibration of NUTS on a model (rank statistics)")
    sb.add_argument("model", help="the .gm model file")
    sb.add_argument("--data", "-d", help="fixed data (covariates, sizes); stochastic nodes named there are observed")
    sb.add_argument("--observed", help="comma-separated nodes to simulate as data (default: the data's stochastic "
                                       "nodes, else every stochastic node without descendants)")
    sb.add_argument("--params", help="comma-separated nodes to rank (default: every latent node)")
    sb.add_argument("--sims", type=int, default=200)
    sb.add_argument("--draws", type=int, default=100, help="posterior draws kept per fit, after thinning")
    sb.add_argument("--warmup", type=int, default=200)
    sb.add_argument("--thin", type=int, default=1)
    sb.add_argument("--chains", type=int, default=1)
    sb.add_argument("--bins", type=int, default=None, help="rank histogram bins (default min(20, sims / 10))")
    sb.add_argument("--seed", type=int, default=0)
    sb.add_argument("-o", "--output", help="rank histograms to FILE.png (needs matplotlib)")
    sb.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    sb.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def _stop_on_terminate() -> None:
    """A kill signal (SIGTERM) stops sampling like Ctrl-C: the draws made so far are written."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _stop_on_terminate()
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    from .errors import ModelError
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code = COMMANDS[args.command](args, caught)
            finally:
                _print_warnings(caught)
        return code
    except ModelError as err:
        if args.debug:
            raise
        print(err.format(), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()      # output piped into `head`: not an error
        return 0
    except (ValueError, OSError, ImportError) as err:
        if args.debug:
            raise
        print(f"ppl: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _print_warnings(caught):
    from .model import ModelWarning
    seen = set()
    for w in caught:
        if issubclass(w.category, ModelWarning) and str(w.message) not in seen:
            seen.add(str(w.message))
            print(f"warning: {w.message}", file=sys.stderr)
    caught.clear()


def _load(args):
    import ppl
    model = ppl.load(args.model)
    data = ppl.load_data(args.data) if args.data else {}
    return model, data


def cmd_check(args, caught) -> int:
    from .graph import describe
    model, data = _load(args)
    g = model.graph
    if args.data:
        lw = model.bind(data, strict=args.strict)
        roles, shapes = dict(lw.binding.roles), lw.shapes
        for name in lw.enumerated:              # discrete latents: summed out of the density
            roles[name] = "summed out"
    else:
        roles = {n: ("data" if node.kind == "data" else
                     "deterministic" if node.kind == "deterministic" else
                     "latent (observed if the data has it)") for n, node in g.nodes.items()}
        shapes = {}
    width = max((len(n) for n in g.nodes), default=4)
    print(f"{args.model}: ok ({len(g.nodes)} nodes, {len(g.factors)} other terms)")
    for name in g.order:
        node = g.nodes[name]
        what = f"~ {node.dist.func}(...)" if node.dist is not None else ("= ..." if node.expr is not None else "")
        shape = f" shape {shapes[name]}" if name in shapes and shapes[name] != () else ""
        print(f"  {name:<{width}}  {roles[name]:<14}{shape}  {what}".rstrip())
    lines = g.source.splitlines()
    for f in g.factors:
        text = lines[f.span.line - 1].strip() if f.span.line <= len(lines) else ""
        print(f"  [line {f.span.line}] {'observes' if f.kind == 'observe' else 'adds'}: {text}")
    if args.data:
        for label, plan in lw.suffstats.items():
            if label.startswith("observe@"):      # the J-th observed expression: named by its line
                label = f"[line {g.factors[int(label.partition('@')[2])].span.line}]"
            print(f"  {label}: {plan.describe()}")
    if args.print_graph:
        print(describe(g))
    return 0


class _ProgressBar:
    """One bar for all chains together: phase, iterations, draws/s (all chains), divergences.
    When stderr is not a terminal (a log, a pipe) it prints one line as each phase starts."""

    def __init__(self, quiet, chains=1, warmup=0, draws=0):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.chains, self.counts = chains, {"warmup": warmup, "sampling": draws}
        self.bar = self.phase = None

    def __call__(self, p):
        if self.quiet:
            return
        if not self.tty:
            if p.phase != self.phase:
                self.phase = p.phase
                print(f"{p.phase}: {self.chains} chains x {self.counts.get(p.phase, '?')} iterations "
                      "(Ctrl-C stops and keeps the draws made so far)", file=sys.stderr, flush=True)
            return
        if self.bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("warmup", total=p.total, info="")
        rate = p.iteration * self.chains / max(p.elapsed_s, 1e-9)
        unit = "draws/s" if p.phase == "sampling" else "it/s"
        self.bar.update(self.task, completed=p.iteration, description=p.phase,
                        info=f"{rate:,.0f} {unit}  {p.divergences} divergent")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def _start_distributed(args) -> None:
    """``--coordinator``/``--distributed``: join a ``jax.distributed`` run before JAX starts; each
    process then samples its own chains and writes its own file (``draws.process1.json``)."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not (any(given) or args.distributed):
        return
    if any(given) and not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id go together "
                         "(e.g. --coordinator host0:1234 --num-processes 2 --process-id 0)")
    import jax
    try:
        if args.distributed:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                       process_id=args.process_id)
    except (RuntimeError, ValueError) as err:
        hint = (" (--distributed needs a cluster jax.distributed recognises, such as SLURM or Open MPI; "
                "elsewhere give --coordinator HOST:PORT --num-processes P --process-id I)") if args.distributed else ""
        raise ValueError(f"could not join the distributed run: {str(err).strip()}{hint}") from None
    if args.output and jax.process_count() > 1:
        root, ext = os.path.splitext(args.output)
        args.output = f"{root}.process{jax.process_index()}{ext}"


def cmd_sample(args, caught) -> int:
    _start_distributed(args)
    model, data = _load(args)
    bar = _ProgressBar(args.quiet, args.chains, args.warmup, args.draws)
    t0 = time.perf_counter()
    try:
        post = model.sample(data, chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
                            target_accept=args.target_accept, max_depth=args.max_depth, progress=bar,
                            strict=args.strict, algorithm=args.algorithm, dense_mass=args.dense,
                            mass_matrix=args.mass_matrix,
                            devices=args.devices, shard_data=args.shard_data,
                            restart_stuck=not args.keep_stuck_chains,
                            path_length=args.path_length, num_steps=args.num_steps)
    finally:
        bar.close()
    _print_warnings(caught)
    _report(post, args, time.perf_counter() - t0)
    return 0 if post.completed else EXIT_INTERRUPTED   # Ctrl-C: the draws so far are written


def cmd_prior(args, caught) -> int:
    model, data = _load(args)
    t0 = time.perf_counter()
    post = model.prior(data, draws=args.draws, seed=args.seed)
    _print_warnings(caught)
    _report(post, args, time.perf_counter() - t0)
    return 0


def _report(post, args, wall):
    summary = post.summary()
    print(summary)
    for w in summary.warnings():
        print(f"warning: {w}", file=sys.stderr)
    t = post.timings
    parts = [f"compile {t.get('compile_s', 0):.2f} s"]
    if "warmup_s" in t:
        parts.append(f"warm-up {t['warmup_s']:.2f} s")
    parts.append(f"sampling {t.get('sampling_s', 0):.2f} s")
    devices = post.meta.get("devices")
    where = (f"; {post.num_chains} chains on {devices} device{'s' if devices != 1 else ''}"
             if devices and post.num_chains > 1 else "")
    print("time: " + ", ".join(parts) + f" (total {wall:.2f} s{where})", file=sys.stderr)
    if getattr(args, "output", None):
        post.save(args.output)
        note = "" if post.completed else f" (incomplete: interrupted after {post.num_draws} draws per chain)"
        print(f"wrote {args.output}{note}", file=sys.stderr)
    elif not post.completed:
        print(f"incomplete: interrupted after {post.num_draws} draws per chain", file=sys.stderr)


def cmd_summary(args, caught) -> int:
    from .results import load
    if not os.path.exists(args.file):
        raise OSError(f"no such file: {args.file}")
    summary = load(args.file).summary()
    print(summary)
    for w in summary.warnings():
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_combine(args, caught) -> int:
    from .results import combine, load
    for f in args.files:
        if not os.path.exists(f):
            raise OSError(f"no such file: {f}")
    post = combine([load(f) for f in args.files], names=args.files)
    summary = post.summary()
    print(summary)
    for w in summary.warnings():
        print(f"warning: {w}", file=sys.stderr)
    if args.output:
        post.save(args.output)
        print(f"wrote {args.output} ({post.num_chains} chains from {len(args.files)} runs)", file=sys.stderr)
    return 0


def cmd_graph(args, caught) -> int:
    import ppl
    from .binding import bind
    from .graphviz import render, to_dot
    model = ppl.load(args.model)
    binding = bind(model.graph, ppl.load_data(args.data), strict=args.strict) if args.data else None
    for w in binding.warnings if binding is not None else ():
        print(f"warning: {w}", file=sys.stderr)
    text = to_dot(model.graph, binding, name=os.path.splitext(os.path.basename(args.model))[0])
    if args.output:
        render(text, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_plot(args, caught) -> int:
    from .plot import plot_posterior
    from .results import load
    if not os.path.exists(args.file):
        raise OSError(f"no such file: {args.file}")
    post = load(args.file)
    out = args.output or os.path.splitext(args.file)[0] + ".png"
    names = [v.strip() for v in args.vars.split(",") if v.strip()] if args.vars else None
    try:
        total = len(post._select_columns(names))
        drawn = plot_posterior(post, out, names)
    except KeyError as err:
        raise ValueError(str(err)) from None
    if total > len(drawn):
        print(f"note: drew the first {len(drawn)} of {total} scalars; choose others with --vars",
              file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


COMMANDS = {"check": cmd_check, "sample": cmd_sample, "prior": cmd_prior, "summary": cmd_summary,
            "combine": cmd_combine, "graph": cmd_graph, "plot": cmd_plot}


def cmd_vi(args, caught) -> int:
    model, data = _load(args)
    t0 = time.perf_counter()
    post = model.vi(data, family=args.family, draws=args.draws, seed=args.seed, strict=args.strict,
                    **({} if args.family == "pathfinder" else
                       {"max_iter": args.max_iter, "learning_rate": args.learning_rate,
                        "tol_rel_obj": args.tol_rel_obj}))
    _print_warnings(caught)
    m = post.meta
    if m.get("iterations") is not None:
        state = "converged" if m["converged"] else "NOT converged"
        print(f"{m['family']} ADVI: {state} ({m['iterations']} iterations, ELBO {m['elbo'][-1][1]:.6g})",
              file=sys.stderr)
    else:
        print(f"pathfinder: ELBO {m['elbo']:.6g}", file=sys.stderr)
    _report(post, args, time.perf_counter() - t0)
    return 0 if post.completed else EXIT_INTERRUPTED


def cmd_optimize(args, caught) -> int:
    model, data = _load(args)
    t0 = time.perf_counter()
    res = model.optimize(data, method=args.method, mle=args.mle, seed=args.seed, restarts=args.restarts,
                         strict=args.strict, **({"max_iter": args.max_iter} if args.max_iter else {}))
    _print_warnings(caught)
    print(res)
    t = res.timings
    print(f"time: compile {t['compile_s']:.2f} s, fit {t['fit_s']:.2f} s (total {time.perf_counter() - t0:.2f} s)",
          file=sys.stderr)
    if not res.converged:
        print(f"warning: the optimiser did not converge: {res.message}", file=sys.stderr)
    if args.output:
        res.to_json(args.output)
        print(f"wrote {args.output} (simulate from the fit: ppl prior {args.model} --data {args.output})",
              file=sys.stderr)
    return 0


COMMANDS.update(vi=cmd_vi, optimize=cmd_optimize)


def cmd_sbc(args, caught) -> int:
    from .sbc import run_sbc
    model, data = _load(args)
    split = lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else None  # noqa: E731
    step = max(1, args.sims // 10)

    def progress(done, total):
        if not args.quiet and (done % step == 0 or done == total):
            print(f"sbc: {done}/{total} fits", file=sys.stderr, flush=True)

    res = run_sbc(model, data, sims=args.sims, draws=args.draws, warmup=args.warmup, thin=args.thin,
                  chains=args.chains, observed=split(args.observed), params=split(args.params), bins=args.bins,
                  seed=args.seed, progress=progress)
    _print_warnings(caught)
    print(res)
    if args.output:
        try:
            res.plot(args.output)
            print(f"wrote {args.output}", file=sys.stderr)
        except ImportError as err:
            print(f"note: no rank histograms: {err}", file=sys.stderr)
    return 0


COMMANDS.update(sbc=cmd_sbc)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
