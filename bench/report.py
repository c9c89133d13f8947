"""The harness's tables: markdown from a results document (bench/run.py writes it, and
`python bench/run.py --render results/X.json` re-writes the markdown of an old one)."""
from __future__ import annotations

from pathlib import Path

from common import CONFIGS


# ----------------------------------------------------------------------------- formatting


def fmt(v, kind="s"):
    if v is None:
        return "—"
    if kind == "int":
        return f"{v:.0f}"
    if kind == "rhat":
        return f"{v:.3f}"
    if kind == "ratio":
        return f"{v:.2f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2e}"


def label(name, args):
    if name.startswith("numpyro-par"):
        return CONFIGS[name][1].replace("NumPyro parallel", f"NumPyro parallel ({args.parallel_devices_for(args)} devices)")
    return CONFIGS[name][1]


MAIN_COLS = [("compile_s", "compile s", "s"), ("ttfd_cold_s", "first draw, cold s", "s"),
             ("ttfd_cached_s", "first draw, cached s", "s"), ("run_s", "warm-up+sampling s", "s"),
             ("ess_min", "min bulk ESS", "int"), ("ess_per_s", "ESS/s", "s"), ("ess_per_grad", "ESS/grad", "s"),
             ("divergences", "div", "int"), ("rhat_max", "max R-hat", "rhat"), ("logp_us", "logp+grad µs", "s"),
             ("logp_args_us", "logp+grad µs, data as args", "s"), ("logp_loop_us", "logp+grad µs, in a loop", "s")]
RATIO_COLS = [("compile_s", "compile"), ("ttfd_cold_s", "first draw cold"), ("ttfd_cached_s", "first draw cached"),
              ("run_s", "warm-up+sampling"), ("ess_per_s", "ESS/s"), ("ess_per_grad", "ESS/grad"),
              ("logp_us", "logp+grad"), ("logp_args_us", "logp+grad, data as args"), ("logp_loop_us", "logp+grad, in a loop")]


def main_table(summary: dict, models: list, configs: list, args) -> list:
    lines = ["| model | system | " + " | ".join(c[1] for c in MAIN_COLS) + " |",
             "|---|---|" + "---:|" * len(MAIN_COLS)]
    for m in models:
        for c in configs:
            s = summary.get(m, {}).get(c)
            if s is None:
                continue
            if s.get("unsupported") or s.get("error"):
                why = s.get("unsupported") and f"unsupported: {s['unsupported']}" or f"error: {s['error']}"
                why = why.replace("|", "\\|").replace("\n", " ")[:300]
                lines.append(f"| {m} | {label(c, args)} | {why} |" + " |" * (len(MAIN_COLS) - 1))
                continue
            cells = [fmt(s.get(k), kind) for k, _, kind in MAIN_COLS]
            lines.append(f"| {m} | {label(c, args)} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(summary: dict, models: list, configs: list, args) -> list:
    lines = ["| model | peer | " + " | ".join(c[1] for c in RATIO_COLS) + " |",
             "|---|---|" + "---:|" * len(RATIO_COLS)]
    n = 0
    for m in models:
        p = summary.get(m, {}).get("ppl")
        if not p or p.get("unsupported") or p.get("error"):
            continue
        for c in configs:
            if c.startswith("ppl"):
                continue
            s = summary.get(m, {}).get(c)
            if not s or s.get("unsupported") or s.get("error"):
                continue
            cells = []
            for k, _ in RATIO_COLS:
                a, b = p.get(k), s.get(k)
                cells.append(fmt(a / b, "ratio") if a is not None and b else "—")
            lines.append(f"| {m} | {label(c, args)} | " + " | ".join(cells) + " |")
            n += 1
    return lines if n else []


def notes(summary: dict, models: list, configs: list, args) -> list:
    out = []
    for m in models:
        for c in configs:
            s = summary.get(m, {}).get(c) or {}
            if s.get("logp_check") and s["logp_check"] != "ok" and not s["logp_check"].startswith("skipped"):
                out.append(f"- {m}, {label(c, args)}: log density vs hand-written: {s['logp_check']}")
            if s.get("logp_note"):
                out.append(f"- {m}, {label(c, args)}: logp+grad not timed: {s['logp_note']}")
            if c.startswith("numpyro-par") and s.get("chain_method_used") and s["chain_method_used"] != "parallel":
                out.append(f"- {m}, NumPyro parallel fell back to `{s['chain_method_used']}` "
                           f"({s.get('devices')} devices for {args.chains} chains)")
        checks = {c: (summary.get(m, {}).get(c) or {}).get("logp_check") for c in configs}
        good = [label(c, args) for c, v in checks.items() if v == "ok"]
        if good:
            out.append(f"- {m}: log density equals the hand-written one up to a constant for: {', '.join(good)}")
        skipped = sorted({v for v in checks.values() if v and v.startswith("skipped")})
        if skipped:
            out.append(f"- {m}: log densities not compared with the hand-written one: {skipped[0][len('skipped '):]}")
        if m == "mixture_hard":
            for c in configs:
                s = summary.get(m, {}).get(c) or {}
                if s.get("rhat_max") is not None:
                    agree = "chains agree" if s["rhat_max"] < 1.01 else "chains DISAGREE (local modes)"
                    out.append(f"- mixture_hard, {label(c, args)}: max R-hat {s['rhat_max']:.3f} "
                               f"({s.get('rhat_max_param')}): {agree}")
    return out


def scaling_tables(scaling: dict, s: dict, args) -> list:
    lines = []
    if scaling.get("logistic_n"):
        lines += ["", f"### Scaling in N: logistic, D=20, synthetic (seed 0), {s['chains']} chains × "
                      f"{s['scaling_warmup']} warm-up × {s['scaling_draws']} draws, caches off, one fit per process "
                      f"(warm-up+sampling = its wall time less compilation)", "",
                  "| N | system | compile s | warm-up+sampling s | min bulk ESS | ESS/s | logp+grad µs |",
                  "|---:|---|---:|---:|---:|---:|---:|"]
        for n, per in scaling["logistic_n"].items():
            for c, row in per.items():
                if row.get("unsupported") or row.get("error"):
                    lines.append(f"| {n} | {label(c, args)} | {(row.get('unsupported') or row.get('error'))[:200]} | | | | |")
                    continue
                lines.append(f"| {n} | {label(c, args)} | {fmt(row.get('compile_s'))} | {fmt(row.get('run_s'))} | "
                             f"{fmt(row.get('ess_min'), 'int')} | {fmt(row.get('ess_per_s'))} | {fmt(row.get('logp_us'))} |")
    if scaling.get("chains"):
        lines += ["", f"### Scaling in chains: eight_schools, vectorised chains, {s['scaling_warmup']} warm-up × "
                      f"{s['scaling_draws']} draws, caches off, one fit per process", "",
                  "| chains | system | compile s | warm-up+sampling s | min bulk ESS | ESS/s | ESS/grad | div |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for n, per in scaling["chains"].items():
            for c, row in per.items():
                if row.get("unsupported") or row.get("error"):
                    lines.append(f"| {n} | {label(c, args)} | {(row.get('unsupported') or row.get('error'))[:200]} | | | | | |")
                    continue
                lines.append(f"| {n} | {label(c, args)} | {fmt(row.get('compile_s'))} | {fmt(row.get('run_s'))} | "
                             f"{fmt(row.get('ess_min'), 'int')} | {fmt(row.get('ess_per_s'))} | "
                             f"{fmt(row.get('ess_per_grad'))} | {fmt(row.get('divergences'), 'int')} |")
    return lines


class _SettingsView:
    """What the tables need of the run's arguments, read back from a results document."""

    def __init__(self, settings: dict):
        self.chains = settings["chains"]
        self._devices = settings.get("parallel_devices") or settings["chains"]

    def parallel_devices_for(self, _):
        return self._devices


def _bytecode_line(env: dict) -> list:
    b = env.get("bytecode")
    if not b:
        return []
    return [f"- Python bytecode of ppl and bench/ {'compiled before the first worker' if b['compiled'] else 'NOT all compiled'}"
            " (as pip install compiles an installed package's; the peers came with theirs)"
            + ("; PYTHONDONTWRITEBYTECODE was set, so without this every worker would compile ppl from source"
               if b["dont_write_env"] else "")]


def render(doc: dict) -> str:
    env, s = doc["environment"], doc["settings"]
    args = _SettingsView(s)
    load = doc["load"]
    lines = ["# ppl benchmark results", "",
             f"Reproduce: `{doc['command']}`", ""] + ([f"({doc['note']})", ""] if doc.get("note") else []) + [
             f"- {doc['finished']}; ppl {env['ppl_commit']}{' (with uncommitted changes in ppl/)' if env['ppl_dirty'] else ''}; "
             f"jax {env['versions']['jax']}, numpyro {env['versions']['numpyro']}, blackjax {env['versions']['blackjax']}, "
             f"pystan {env['versions']['pystan'] or 'not installed'}; Python {env['python']}",
             f"- machine: {env['cpus']} CPU cores ({env['processor']}), CPU only; "
             f"load average (1 min) at each process start: min {load['min']:.2f}, median {load['median']:.2f}, "
             f"max {load['max']:.2f} (the machine is shared: other jobs ran meanwhile, so times are noisy)",
             (f"- settings: {s['chains']} chains × {s['warmup']} warm-up × {s['draws']} draws; medians over "
              f"{s['repeats']} repeat(s); " if doc.get("summary") else "- settings: ")
             + f"float{s['precision']}; every system: NUTS, diagonal mass matrix, "
             f"target acceptance 0.8, max tree depth 10, initial points uniform(−2, 2) on the unconstrained space",
             f"- total harness time: {doc['elapsed_s'] / 60:.1f} min"] + _bytecode_line(env) + [""]
    if doc.get("summary"):
        lines += ["## Per model and system", ""] + main_table(doc["summary"], s["models"], s["configs"], args)
        rt = ratio_table(doc["summary"], s["models"], s["configs"], args)
        if rt:
            lines += ["", "## ppl ÷ peer", "",
                      "Times (compile, first draw, warm-up+sampling, logp+grad): below 1 means ppl is faster. "
                      "ESS/s and ESS/grad: above 1 means ppl is better.", ""] + rt
        nt = notes(doc["summary"], s["models"], s["configs"], args)
        if nt:
            lines += ["", "## Notes", ""] + nt
    if doc.get("scaling"):
        lines += ["", "## Scaling series"] + scaling_tables(doc["scaling"], s, args)
    lines += ["", "Columns are defined in bench/README.md.", ""]
    return "\n".join(lines)


def update_readme(md: str, scaling_only: bool = False):
    """Put ``md`` between the markers at the end of bench/README.md (a scaling-only run has its own)."""
    path = Path(__file__).resolve().parent / "README.md"
    tag = "scaling" if scaling_only else "latest"
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        body = md.replace("# ppl benchmark results", "### Latest scaling results" if scaling_only
                          else "### Latest results (`bench/results/latest.md`)", 1)
        body = body.replace("\n## ", "\n#### ")        # the table's sections sit under that heading
        path.write_text(f"{head}{begin}\n{body}\n{end}{tail}")
