"""XLA's compile options for ppl's programs, decided in one place: which emitters and passes XLA's
CPU compiler uses for a program (:func:`compiler_options`), the user's own additions
(``PPL_XLA_OPTIONS``, :func:`user_options`), how many parts XLA compiles a program in
(:func:`codegen_parts`), and compiling with options an installed jaxlib may not know
(:func:`compile_with`). Every NUTS/HMC/MH chunk, starting-point search, generator, VI, optimiser
and low-rank program is compiled through here."""
from __future__ import annotations

import json
import os
import re

__all__ = ["compiler_options", "compile_with", "user_options", "codegen_parts", "YNN_FUSIONS_OFF", "PLAIN_SUMS",
           "SMALL_DATA", "LONG_RUN"]

SMALL_DATA = 512  # numbers of data one log-density evaluation reads (float32's emitter rule, compiler_options)
LONG_RUN = 2e9    # density operations x iterations x chains per core (the same)

YNN_FUSIONS_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA's CPU compiler (jaxlib 0.10) hands each reduction, with the elementwise operations it fuses
into it, to YNNPACK. For a plain sum that is faster (5,000 numbers: 0.9 against 1.2 us), but a sum
of softplus terms through ppl's own ``log1p_exp`` (the logistic distribution, ``log_inv_logit``,
``softplus`` in a model) ran 3x slower as YNNPACK fusions than as XLA's own loops: a logistic
likelihood over 5,000 observations took 46-51 us a gradient against 14-15 (one core, data as
arguments) and NUTS 0.54 against 0.31 s for 4 chains x 2000 iterations. Off, over the 45
posteriordb models warm-up + sampling took 0.96x the time and compilation 0.95x (geometric means;
none slower by more than 10 % beyond a 0.04 s run; ``bench/results/ynn_survey.md``); on the
harness's models (``bench/options_ab.py``, ``bench/results/ynn_ab.md``, medians of 5 alternating fits)
0.94-1.04x (logistic regression 1.02x: its two plain sums lose YNNPACK's faster kernel), the
logistic likelihood 0.58-0.60x, a gamma regression 1.01x and a Weibull likelihood 1.09x (YNNPACK's
vectorised log and powers against the C library's). YNNPACK splits a fusion over XLA's intra-op
threads, which loses when the chains keep every core busy, as they do by default. A jaxlib without
the option compiles without it (:func:`compile_with`)."""

PLAIN_SUMS = {"xla_disable_hlo_passes": "tree_reduction_rewriter"}
"""Under float64, XLA's CPU compiler sums long vectors as written (one vectorised loop fused with
the terms it adds) rather than as its tree of partial sums: the tree (``tree_reduction_rewriter``,
a reduce-window of 32 then a reduce) is there for float32's rounding, but it splits the fusion,
so the terms of a 5,000-observation likelihood went through memory twice and its sums ran as
separate loops. Logistic regression, N = 5,000, D = 20 (``bench/models/logistic.gm``), gradient in
a compiled loop on one core: 35.9 against 25.5 us (25.8 with XLA's newer fusion emitters, which
no longer pay: :func:`compiler_options`); NUTS, 4 chains x 2000 iterations on 2 cores: warm-up + sampling
1.21-1.25 against 0.92-0.95 s, compile unchanged. Hierarchical linear regression and
mixture_separated: 0.6 against 0.5 us and 7.4 against 6.5 us a gradient. The summed value agrees
to the last digit or two in float64 (relative 1e-16 of a log density of -7e6); in float32 the
tree's rounding error was 2.7e-7 against 7.6e-7 over 10^6 terms, and its speed the same (32 us a
gradient either way), so float32 programs keep XLA's tree."""



def codegen_parts() -> dict:
    """How many parts XLA's CPU compiler splits a program's LLVM module into, to compile them on
    its threads: twice the cores this process may run on, at most XLA's default of 32. Each part
    is a module of its own, with its own passes and its own code library to link; on 2 cores 32
    parts cost more than they spread. The same lowering compiled alternately in one process,
    medians of 9 (``bench/README.md``, "Cold start"): logistic regression's NUTS chunk 0.434
    against 0.452 s, mixture_hard's 0.513 against 0.574 s; in 5 (4, against 2, 8 and 16 parts),
    hierarchical linear 0.471 against 0.514 s and eight schools' level-0 program 0.312 against
    0.315 s; 1 part (no parallel compile) 0.506 against 0.440 s on logistic. The code is the same:
    warm-up and sampling unchanged (0.453-0.464 and 0.414-0.423 s either way)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # pragma: no cover - a platform without affinity
        cores = os.cpu_count() or 1
    return {"xla_cpu_parallel_codegen_split_count": min(32, 2 * max(1, cores))}


_UNKNOWN_OPTIONS: set = set()   # compile options this XLA refused, left out from then on


def compile_with(lowered, options: dict | None = None):
    """``lowered.compile(options)``, leaving out any option the installed XLA does not know (an
    older or newer jaxlib than the one :data:`YNN_FUSIONS_OFF` was measured with), once refused."""
    options = {k: v for k, v in (options or {}).items() if k not in _UNKNOWN_OPTIONS} or None
    try:
        return lowered.compile(options)
    except Exception as err:  # noqa: BLE001 - only XLA's "no such option" is handled, the rest re-raised
        unknown = re.search(r"No such compile option: '([^']+)'", str(err))
        if unknown is None or unknown.group(1) not in (options or {}):
            raise
        _UNKNOWN_OPTIONS.add(unknown.group(1))
        return compile_with(lowered, options)


def compiler_options(data_size: int, devices: list, work: float | None = None, quick: bool = False) -> dict | None:
    """XLA options for a program ppl compiles. On CPU every program leaves reductions to XLA rather
    than YNNPACK (:data:`YNN_FUSIONS_OFF`), and XLA's newer fusion emitters are off for every
    float64 program, which also sums as written (:data:`PLAIN_SUMS`): with the sums as one loop
    each, the emitters sample no faster (4 chains x 2000 iterations, alternating fits,
    ``bench/results/plain_sums_ab.md``: logistic regression, mixture_separated, hierarchical linear,
    a gamma regression and a logistic likelihood 0.98-1.01x; logistic regression's gradient at
    N = 10^5 and 10^6, 0.95-1.05x) and they compile 0.5-1.3 s slower.

    Under float32 (``PPL_PRECISION=32``) XLA's tree of partial sums stays, and the emitters are off
    unless the log density reads more than SMALL_DATA numbers per evaluation
    (:func:`~ppl.inference.parallel.density_data_size`) *and* the run is long (``work``,
    :func:`~ppl.inference.parallel.run_work`, at least LONG_RUN; unknown counts as long): there they
    still sample faster (logistic regression's gradient 30.5 against 33.2 us), and that rule was
    measured before the sums changed (``bench/loop_survey.py --emitters``,
    bench/results/emitters_survey.md: over the 45 posteriordb models compile 0.85x and warm-up +
    sampling 0.96x without them; logistic regression and the mixtures sampled 10-22 % slower
    without them but compiled 0.75-1.0 s faster; LONG_RUN, 2e9, is about 2.6 s of sampling for
    logistic regression, 22 s for the mixtures).

    ``PPL_FUSION_EMITTERS=1`` (or ``0``) keeps the emitters on (off) whatever the precision, size
    and length. ``quick``: the program is also compiled at XLA's backend optimisation level 0,
    sooner and slower to run (:mod:`ppl.inference.quick` decides when that pays).
    ``PPL_XLA_OPTIONS`` (:func:`user_options`) is added last, on any platform."""
    if devices[0].platform != "cpu":
        return user_options() or None
    float64 = _float64()
    forced = os.environ.get("PPL_FUSION_EMITTERS", "").strip()
    if forced in ("0", "1"):
        off = forced == "0"
    else:
        off = float64 or data_size <= SMALL_DATA or (work is not None and work < LONG_RUN)
    options = {"xla_cpu_use_fusion_emitters": False} if off else {}
    options.update(YNN_FUSIONS_OFF)
    options.update(codegen_parts())
    if float64:
        options.update(PLAIN_SUMS)
    if quick:
        options["xla_backend_optimization_level"] = 0
    return _merged(options, user_options())


def _float64() -> bool:
    import jax
    import numpy as np
    return jax.dtypes.canonicalize_dtype(np.float64) == np.float64


_DISABLED_PASSES = "xla_disable_hlo_passes"
_USER_OPTIONS: dict = {}   # PPL_XLA_OPTIONS's text -> its options (read once per distinct value)


def user_options() -> dict:
    """The XLA compile options in ``PPL_XLA_OPTIONS``, a JSON object (for example
    ``{"xla_cpu_use_fusion_emitters": true}``), added to ppl's own choice for every program
    compiled from then on (later values win; ``xla_disable_hlo_passes`` lists are joined). For
    measuring a setting without editing ppl; JAX's compile cache keys on the options, so cached
    programs are not reused across values. Raises ValueError when it is not a JSON object of
    names to strings, numbers or booleans."""
    text = os.environ.get("PPL_XLA_OPTIONS", "").strip()
    if not text:
        return {}
    if text not in _USER_OPTIONS:
        try:
            options = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"PPL_XLA_OPTIONS is not valid JSON ({err.msg} at character {err.pos}): {text!r}; "
                             "give an object, e.g. PPL_XLA_OPTIONS='{\"xla_cpu_use_fusion_emitters\": true}'") from None
        if not isinstance(options, dict) or not all(
                isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in options.items()):
            raise ValueError(f"PPL_XLA_OPTIONS must be a JSON object of XLA option names to strings, numbers or "
                             f"booleans, not {text!r}; e.g. PPL_XLA_OPTIONS='{{\"xla_cpu_use_fusion_emitters\": true}}'")
        _USER_OPTIONS[text] = options
    return dict(_USER_OPTIONS[text])


def _merged(options: dict, extra: dict) -> dict:
    """``options`` updated with ``extra``; the passes both disable (and any ``XLA_FLAGS`` disables,
    which a compile option would otherwise replace) joined."""
    passes = [options.get(_DISABLED_PASSES, ""), extra.get(_DISABLED_PASSES, "")]
    out = {**options, **extra}
    if any(passes):
        flag = re.search(r"--xla_disable_hlo_passes=(\S+)", os.environ.get("XLA_FLAGS", ""))
        names = [n for p in [flag.group(1) if flag else "", *passes] for n in p.split(",") if n]
        out[_DISABLED_PASSES] = ",".join(dict.fromkeys(names))
    return out
