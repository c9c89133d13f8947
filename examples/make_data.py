"""Makes the data of the generative examples (fixed seeds, so the files are reproducible).

    python examples/make_data.py            # writes examples/{gmm,hmm_text,image_mixture,ar_audio}.json

Each dataset also has a function, used by tests/test_examples.py at reduced sizes:

- ``gmm(n)``: n points from a 2-D mixture of K = 3 Gaussians (diagonal covariance shared by the
  components), with the true parameters;
- ``tokens()`` / ``vocabulary()``: the words of ``fables.txt`` (four Aesop fables, retold for this
  repository and in the public domain) as integer ids;
- ``images(n)``: n binary 8x8 images, each one of four shapes with 10% of its pixels flipped;
- ``tone(seconds)``: a decaying tone (440 Hz and its third harmonic, 1320 Hz) plus noise, at 8 kHz.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- Gaussian mixture

GMM_W = np.array([0.3, 0.45, 0.25])
GMM_MU = np.array([[-4.0, -1.0], [0.0, 1.5], [4.0, 0.0]])      # sorted by the first coordinate
GMM_SIGMA = np.array([0.8, 0.7])                                # per coordinate, shared


def gmm_with_components(n: int = 300, seed: int = 1) -> tuple:
    """(y, z): the points and the component each was drawn from."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=GMM_W)
    y = rng.normal(GMM_MU[z], GMM_SIGMA)
    return np.round(y, 4), z


def gmm(n: int = 300, seed: int = 1) -> dict:
    return {"y": gmm_with_components(n, seed)[0].tolist()}


# ---------------------------------------------------------------- text

CORPUS = os.path.join(HERE, "fables.txt")


def words(path: str = CORPUS) -> list:
    """Lower-case words, with `.` and `,` as words of their own; the header paragraph is skipped."""
    with open(path, encoding="utf-8") as f:
        text = f.read().split("\n\n", 1)[1]
    return re.findall(r"[a-z]+|[.,]", text.lower())


def vocabulary(path: str = CORPUS) -> list:
    """The distinct words, in order of first appearance: word i has token id i."""
    return list(dict.fromkeys(words(path)))


def tokens(path: str = CORPUS, n: int | None = None) -> list:
    index = {w: i for i, w in enumerate(vocabulary(path))}
    ids = [index[w] for w in words(path)]
    return ids[:n] if n else ids


def detokenise(ids, vocab: list) -> str:
    """Token ids back to text: words joined by spaces, sentences capitalised."""
    out, capital = [], True
    for i in ids:
        w = vocab[int(i)]
        if w in ".,":
            if out:
                out[-1] += w
            capital = w == "."
            continue
        out.append(w.capitalize() if capital or w == "i" else w)
        capital = False
    return " ".join(out)


def hmm_text(n: int | None = None) -> dict:
    """The first n words (all by default); V counts the distinct words among them."""
    ids = tokens(n=n)
    return {"y": ids, "V": max(ids) + 1}


# ---------------------------------------------------------------- binary images

SIDE = 8


def shapes() -> np.ndarray:
    """Four 8x8 templates: a square outline, a plus, a diagonal cross, a filled disc."""
    s = np.zeros((4, SIDE, SIDE), dtype=int)
    s[0, 1, 1:7] = s[0, 6, 1:7] = s[0, 1:7, 1] = s[0, 1:7, 6] = 1
    s[1, 3:5, :] = s[1, :, 3:5] = 1
    idx = np.arange(SIDE)
    s[2, idx, idx] = s[2, idx, SIDE - 1 - idx] = 1
    yy, xx = np.mgrid[:SIDE, :SIDE]
    s[3] = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2 <= 9).astype(int)
    return s


IMAGE_W = np.array([0.25, 0.25, 0.25, 0.25])
FLIP = 0.1


def images(n: int = 200, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    z = rng.choice(4, size=n, p=IMAGE_W)
    x = shapes()[z].reshape(n, -1)
    x = np.where(rng.random(x.shape) < FLIP, 1 - x, x)
    return {"x": x.tolist()}


# ---------------------------------------------------------------- audio

RATE = 8000
PARTIALS = (440.0, 1320.0)     # a fundamental and its third harmonic


def tone(seconds: float = 0.25, seed: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * RATE))) / RATE
    y = np.exp(-t / 0.15) * (np.sin(2 * np.pi * PARTIALS[0] * t) + 0.5 * np.sin(2 * np.pi * PARTIALS[1] * t))
    y = y + 0.005 * rng.normal(size=t.size)
    return {"y": np.round(y, 5).tolist(), "T": int(t.size)}


# ---------------------------------------------------------------- files


def write(name: str, data: dict) -> None:
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path) // 1024} KB)")


def main() -> None:
    write("gmm.json", gmm())
    write("hmm_text.json", hmm_text())
    write("image_mixture.json", images())
    write("ar_audio.json", tone())


if __name__ == "__main__":
    main()
