"""Prints word sequences simulated by the text HMM as text (token ids back to words).

    python examples/show_text.py text_new.json [--words 60] [--samples 3] [--fit text_fit.json]

With --fit (the JSON of `ppl optimize -o`), it first prints the most probable words of each
hidden state: the word classes the HMM found.

The vocabulary is rebuilt from examples/fables.txt by the tokeniser of make_data.py, so token i
means the same word here as in examples/hmm_text.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_data import detokenise, vocabulary  # noqa: E402


def texts(y, words: int = 60, samples: int = 3) -> list:
    """The first `words` tokens of the first `samples` simulated sequences, as text."""
    vocab = vocabulary()
    seqs = y.reshape(-1, y.shape[-1])[:samples]
    return [detokenise(s[:words], vocab) for s in seqs]


def states(fit: dict, top: int = 8) -> list:
    """The `top` most probable words of each hidden state of a fit."""
    import numpy as np
    vocab = vocabulary()
    phi = np.asarray(fit["phi_raw"], float)
    phi = np.exp(phi - phi.max(axis=1, keepdims=True))
    phi /= phi.sum(axis=1, keepdims=True)
    return [[(vocab[i], float(row[i])) for i in np.argsort(-row)[:top]] for row in phi]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("draws", help="the file written by `ppl prior examples/hmm_text.gm --data FIT -o FILE`")
    p.add_argument("--words", type=int, default=60)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--fit", help="the fit's JSON: print each state's most probable words")
    a = p.parse_args(argv)
    if a.fit:
        import json
        with open(a.fit) as f:
            for k, words in enumerate(states(json.load(f))):
                print(f"state {k}: " + " ".join(f"{w}({p:.2f})" for w, p in words))
    from ppl.results import load
    for i, text in enumerate(texts(load(a.draws)["y"], a.words, a.samples)):
        print(f"--- sample {i + 1}")
        print(textwrap.fill(text, 88))


if __name__ == "__main__":
    main()
