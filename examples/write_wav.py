"""Writes waveforms to a 16-bit PCM WAV file (8 kHz, mono), scaled to a peak of 0.9.

    python examples/write_wav.py audio_new.json -o generated.wav      # draws from `ppl prior`
    python examples/write_wav.py examples/ar_audio.json -o original.wav   # the training tone

With several draws, they are played one after another with 0.1 s of silence between them.
"""
from __future__ import annotations

import argparse
import json
import wave

import numpy as np

RATE = 8000


def waveforms(path: str) -> np.ndarray:
    """(n, T) array: the `y` of a data file, or every draw of `y` in a file of draws."""
    with open(path) as f:
        doc = json.load(f)
    if "draws" not in doc:
        return np.asarray(doc["y"], float)[None]
    from ppl.results import load
    y = load(path)["y"]
    return y.reshape(-1, y.shape[-1])


def write_wav(path: str, signals, rate: int = RATE, gap: float = 0.1) -> int:
    """Writes the signals one after another; returns the number of frames written."""
    signals = [np.asarray(s, float) - np.mean(s) for s in signals]
    silence = np.zeros(int(gap * rate))
    parts = []
    for i, s in enumerate(signals):
        parts += ([silence] if i else []) + [s]
    x = np.concatenate(parts)
    x = 0.9 * x / max(np.abs(x).max(), 1e-12)
    pcm = np.round(x * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return len(pcm)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", help="a data file with `y`, or draws written by `ppl prior ... -o FILE`")
    p.add_argument("-o", "--output", default="generated.wav")
    p.add_argument("--draws", type=int, default=4, help="how many draws to write (default 4)")
    a = p.parse_args(argv)
    y = waveforms(a.file)[:a.draws]
    n = write_wav(a.output, y)
    spectrum = np.abs(np.fft.rfft(y - y.mean(axis=1, keepdims=True), axis=1)) ** 2
    peak = np.fft.rfftfreq(y.shape[1], 1 / RATE)[np.argmax(spectrum.mean(axis=0))]
    print(f"wrote {a.output}: {len(y)} x {y.shape[1]} samples ({n / RATE:.2f} s at {RATE} Hz); "
          f"spectral peak {peak:.0f} Hz")


if __name__ == "__main__":
    main()
