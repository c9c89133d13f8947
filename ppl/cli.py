"""The `ppl` command: check, sample, prior, summary. Errors in a model or its data print
`file:line:col: error: ...`, the line and a caret, and exit with status 2 (no traceback)."""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

EXIT_USAGE = 2


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
            sp.add_argument("-o", "--output", help="write draws to FILE (.csv or .json)")

    c = sub.add_parser("check", help="parse and check a model; print its graph")
    common(c, output=False)
    c.add_argument("--print-graph", action="store_true", help="also print the graph IR (parents of each node)")

    s = sub.add_parser("sample", help="MCMC (NUTS) on a model and its data")
    common(s)
    s.add_argument("--chains", type=int, default=4)
    s.add_argument("--warmup", type=int, default=1000)
    s.add_argument("--draws", type=int, default=1000)
    s.add_argument("--algorithm", default="nuts", choices=["nuts"])
    s.add_argument("--target-accept", type=float, default=0.8)
    s.add_argument("--max-depth", type=int, default=10)

    pr = sub.add_parser("prior", help="ancestral simulation of every node the data does not fix")
    common(pr)
    pr.add_argument("--draws", type=int, default=1000)

    sm = sub.add_parser("summary", help="the summary table of saved draws (.csv or .json)")
    sm.add_argument("file")
    sm.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
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
    except (ValueError, OSError) as err:
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
    from .binding import bind
    from .graph import describe
    model, data = _load(args)
    g = model.graph
    if args.data:
        lw = model.bind(data, strict=args.strict)
        roles, shapes = lw.binding.roles, lw.shapes
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
    if args.print_graph:
        print(describe(g))
    return 0


class _ProgressBar:
    def __init__(self, quiet):
        self.quiet = quiet or not sys.stderr.isatty()
        self.bar = None

    def __call__(self, p):
        if self.quiet:
            return
        if self.bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("warmup", total=p.total, info="")
        rate = p.iteration / max(p.elapsed_s, 1e-9)
        self.bar.update(self.task, completed=p.iteration, description=p.phase,
                        info=f"{rate:,.0f} it/s  {p.divergences} divergent")

    def close(self):
        if self.bar is not None:
            self.bar.stop()


def cmd_sample(args, caught) -> int:
    model, data = _load(args)
    bar = _ProgressBar(args.quiet)
    t0 = time.perf_counter()
    try:
        post = model.sample(data, chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed,
                            target_accept=args.target_accept, max_depth=args.max_depth, progress=bar,
                            strict=args.strict)
    finally:
        bar.close()
    _print_warnings(caught)
    _report(post, args, time.perf_counter() - t0)
    return 0


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
    print("time: " + ", ".join(parts) + f" (total {wall:.2f} s)", file=sys.stderr)
    if getattr(args, "output", None):
        post.save(args.output)
        print(f"wrote {args.output}", file=sys.stderr)


def cmd_summary(args, caught) -> int:
    from .results import load
    if not os.path.exists(args.file):
        raise OSError(f"no such file: {args.file}")
    print(load(args.file).summary())
    return 0


COMMANDS = {"check": cmd_check, "sample": cmd_sample, "prior": cmd_prior, "summary": cmd_summary}


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
