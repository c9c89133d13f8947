"""The generative examples of README "Generative examples" (examples/), end to end at reduced
sizes: fit with `ppl optimize` / NUTS, generate with `ppl prior --data fit.json`, and check what
comes out against the truth that examples/make_data.py simulated from."""
import json
import os
import re
import sys
import wave

import numpy as np
import pytest

import ppl
from conftest import EXAMPLES
from ppl.cli import main
from ppl.results import load

sys.path.insert(0, EXAMPLES)
import make_data  # noqa: E402
import plot_gmm  # noqa: E402
import plot_images  # noqa: E402
import show_text  # noqa: E402
import write_wav  # noqa: E402

GMM = os.path.join(EXAMPLES, "gmm.gm")
HMM = os.path.join(EXAMPLES, "hmm_text.gm")
IMAGES = os.path.join(EXAMPLES, "image_mixture.gm")
AUDIO = os.path.join(EXAMPLES, "ar_audio.gm")


def run(*args) -> None:
    assert main([str(a) for a in args]) == 0


def write(path, data) -> str:
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def read(path) -> dict:
    with open(path) as f:
        return json.load(f)


def assert_png(path, min_size=(200, 300)) -> None:
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img[..., :3].std() > 0.05                  # not a blank canvas


def test_committed_data_are_what_make_data_writes():
    for name, data in [("gmm.json", make_data.gmm()), ("hmm_text.json", make_data.hmm_text()),
                       ("image_mixture.json", make_data.images()), ("ar_audio.json", make_data.tone())]:
        assert read(os.path.join(EXAMPLES, name)) == json.loads(json.dumps(data)), name


# ---------------------------------------------------------------- Gaussian mixture

N_GMM = 150


@pytest.fixture(scope="module")
def gmm_fit(tmp_path_factory):
    """Maximum likelihood by L-BFGS (restarts against the mixture's local optima)."""
    tmp = tmp_path_factory.mktemp("gmm")
    data = write(tmp / "gmm.json", make_data.gmm(N_GMM))
    fit = tmp / "fit.json"
    run("optimize", GMM, "--data", data, "--mle", "--method", "lbfgs", "--restarts", 8, "-o", fit)
    return data, str(fit)


def check_gmm_estimate(fit: dict) -> None:
    mu = np.stack([fit["mu1"], fit["mu2"]], axis=1)       # ordered first coordinates: no relabelling
    np.testing.assert_allclose(mu, make_data.GMM_MU, atol=0.35)
    np.testing.assert_allclose(fit["w"], make_data.GMM_W, atol=0.1)
    np.testing.assert_allclose(fit["sigma"], make_data.GMM_SIGMA, atol=0.15)


def test_gmm_mle_by_lbfgs_and_by_adam_recover_the_truth(gmm_fit, tmp_path, capsys):
    data, lbfgs_path = gmm_fit
    lbfgs = read(lbfgs_path)
    check_gmm_estimate(lbfgs)
    adam_path = tmp_path / "adam.json"
    run("optimize", GMM, "--data", data, "--mle", "--method", "adam", "--restarts", 8, "-o", adam_path)
    assert "maximum likelihood estimate (adam" in capsys.readouterr().out
    adam = read(adam_path)
    check_gmm_estimate(adam)
    for name in ("w", "mu1", "mu2", "sigma"):           # the same optimum
        np.testing.assert_allclose(adam[name], lbfgs[name], atol=0.01)


def test_gmm_generates_new_points_from_the_fit_and_plots_them(gmm_fit, tmp_path):
    data, fit_path = gmm_fit
    fit = read(fit_path)
    new = tmp_path / "new.json"
    run("prior", GMM, "--data", fit_path, "--draws", 4, "-o", new)
    y = load(str(new))["y"]
    assert y.shape == (1, 4, N_GMM, 2)
    y = y.reshape(-1, 2)
    mu = np.stack([fit["mu1"], fit["mu2"]], axis=1)
    # well separated components: the nearest fitted mean tells the component of a generated point
    k = np.argmin(((y[:, None, :] - mu[None]) ** 2 / np.asarray(fit["sigma"]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(np.bincount(k, minlength=3) / len(k), fit["w"], atol=0.08)
    for j in range(3):
        np.testing.assert_allclose(y[k == j].mean(0), mu[j], atol=0.25)
        np.testing.assert_allclose(y[k == j].std(0), fit["sigma"], rtol=0.25)
    png = tmp_path / "gmm.png"
    plot_gmm.main(["--data", data, "--fit", fit_path, "--draws", str(new), "-o", str(png)])
    assert_png(png)


def test_gmm_nuts_sums_out_z_and_gives_membership_probabilities():
    y, z_true = make_data.gmm_with_components(N_GMM)
    post = ppl.load(GMM).sample({"y": y}, chains=4, warmup=200, draws=200, seed=0)
    assert post["z"].shape == (4, 200, N_GMM) and post["z.prob"].shape == (4, 200, N_GMM, 3)
    np.testing.assert_allclose(post["z.prob"].sum(-1), 1.0, atol=1e-9)
    # a mixture posterior has minor modes a chain can start in and keep (r_hat flags it); judge
    # the chains in the main mode, by their log density
    lp = post.stats["lp__"].mean(axis=1)
    main_mode = np.flatnonzero(lp > lp.max() - 20)
    assert len(main_mode) >= 2
    mu = np.stack([post["mu1"], post["mu2"]], axis=-1)[main_mode].mean(axis=(0, 1))
    np.testing.assert_allclose(mu, make_data.GMM_MU, atol=0.35)
    # memberships: the most probable component is the true one for nearly every point
    prob = post["z.prob"][main_mode].mean(axis=(0, 1))
    assert np.mean(prob.argmax(1) == z_true) > 0.95
    # z drawn from its conditional: its frequencies match z.prob (Rao-Blackwell)
    freq = np.stack([(post["z"][main_mode] == j).mean(axis=(0, 1)) for j in range(3)], axis=-1)
    assert np.abs(freq - prob).max() < 0.12


# ---------------------------------------------------------------- HMM over text


def softmax(a, axis=-1):
    a = np.asarray(a, float)
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def forward_loglik(pi0, trans, phi, y) -> float:
    alpha = np.log(pi0) + np.log(phi[:, y[0]])
    for t in range(1, len(y)):
        m = alpha.max()
        alpha = m + np.log(np.exp(alpha - m) @ trans) + np.log(phi[:, y[t]])
    m = alpha.max()
    return float(m + np.log(np.exp(alpha - m).sum()))


def test_hmm_fits_text_and_generates_word_sequences(tmp_path, capsys):
    data = make_data.hmm_text(100)
    data["K"] = 3
    y = np.asarray(data["y"])
    path = write(tmp_path / "text.json", data)
    fit_path = tmp_path / "fit.json"
    run("optimize", HMM, "--data", path, "--mle", "--restarts", 4, "-o", fit_path)
    printed = float(re.search(r"log likelihood = (\S+)", capsys.readouterr().out).group(1))
    fit = read(fit_path)
    pi0, trans, phi = np.asarray(fit["pi0"]), softmax(fit["trans_raw"]), softmax(fit["phi_raw"])
    assert trans.shape == (3, 3) and phi.shape == (3, data["V"])
    # the likelihood ppl maximised is the forward algorithm's, and it beats a unigram model's
    loglik = forward_loglik(pi0, trans, phi, y)
    assert loglik == pytest.approx(printed, rel=1e-4)
    counts = np.bincount(y)
    unigram = float((counts * np.log(np.maximum(counts, 1) / len(y))).sum())
    assert (loglik - unigram) / len(y) > 0.3

    new = tmp_path / "new.json"
    run("prior", HMM, "--data", fit_path, "--draws", 10, "-o", new)
    gen = load(str(new))["y"]
    assert gen.shape == (1, 10, len(y)) and gen.min() >= 0 and gen.max() < data["V"]
    # the simulated chain reproduces the text's word-to-word structure far better than chance
    seen = set(zip(y[:-1].tolist(), y[1:].tolist()))
    seqs = gen.reshape(10, -1)
    overlap = np.mean([(a, b) in seen for s in seqs.tolist() for a, b in zip(s[:-1], s[1:])])
    p = counts / counts.sum()
    chance = sum(p[a] * p[b] for a, b in seen)
    assert overlap > 1.5 * chance
    texts = show_text.texts(gen, words=30, samples=2)
    assert len(texts) == 2 and all(len(t.split()) >= 15 for t in texts)
    assert set(re.findall(r"[a-z]+", " ".join(texts).lower())) <= set(make_data.vocabulary())


# ---------------------------------------------------------------- mixture of Bernoullis over images


def test_image_mixture_recovers_the_shapes_and_generates_images(tmp_path):
    n = 80
    data = write(tmp_path / "images.json", make_data.images(n))
    fit_path = tmp_path / "fit.json"
    run("optimize", IMAGES, "--data", data, "--restarts", 8, "-o", fit_path)
    fit = read(fit_path)
    theta = np.asarray(fit["theta"])                      # (K, 64)
    shapes = make_data.shapes().reshape(4, -1)
    # templates match the shapes up to relabelling: each shape's pixels at 1 - FLIP or FLIP
    dist = np.abs(theta[:, None, :] - np.where(shapes, 1 - make_data.FLIP, make_data.FLIP)[None]).mean(-1)
    match = dist.argmin(axis=1)
    assert sorted(match) == [0, 1, 2, 3]
    assert dist.min(axis=1).max() < 0.12
    np.testing.assert_allclose(fit["w"], make_data.IMAGE_W[match], atol=0.12)

    new = tmp_path / "new.json"
    run("prior", IMAGES, "--data", fit_path, "--draws", 2, "-o", new)
    x = load(str(new))["x"]
    assert x.shape == (1, 2, n, 64) and set(np.unique(x)) <= {0, 1}
    # a generated image is a shape with about FLIP of its pixels flipped (random images: ~32)
    hamming = np.abs(x.reshape(-1, 1, 64) - shapes[None]).sum(-1).min(axis=1)
    assert hamming.mean() < 64 * make_data.FLIP + 3
    png = tmp_path / "images.png"
    plot_images.main(["--data", data, "--fit", str(fit_path), "--draws", str(new), "-o", str(png)])
    assert_png(png)


# ---------------------------------------------------------------- autoregressive audio


def test_ar_model_learns_the_tone_and_generates_a_wav(tmp_path, capsys):
    data = write(tmp_path / "tone.json", make_data.tone(0.25))
    fit_path = tmp_path / "fit.json"
    run("optimize", AUDIO, "--data", data, "-o", fit_path)
    beta = np.asarray(read(fit_path)["beta"])
    # the AR polynomial's roots: one pair of complex poles per partial, near the unit circle
    roots = np.roots(np.r_[1.0, -beta[::-1]])
    up = roots[np.angle(roots) > 0]
    freqs = np.sort(np.angle(up) * make_data.RATE / (2 * np.pi))
    np.testing.assert_allclose(freqs, make_data.PARTIALS, atol=20)
    assert (np.abs(up) > 0.95).all() and (np.abs(roots) < 1).all()

    new = tmp_path / "new.json"
    run("prior", AUDIO, "--data", fit_path, "--draws", 4, "-o", new)
    y = load(str(new))["y"].reshape(4, -1)
    assert y.shape == (4, 2000) and np.isfinite(y).all()
    wav = tmp_path / "generated.wav"
    write_wav.main([str(new), "-o", str(wav)])
    assert "spectral peak" in capsys.readouterr().out
    with wave.open(str(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.getnframes()
        pcm = np.frombuffer(w.readframes(frames), dtype="<i2")
    assert frames == 4 * 2000 + 3 * 800 and len(pcm) == frames
    assert 0.8 * 32767 < np.abs(pcm).max() <= 0.9 * 32767 + 1
    # the generated sound's spectrum peaks at the tone's partials
    power = (np.abs(np.fft.rfft(y - y.mean(1, keepdims=True), axis=1)) ** 2).mean(0)
    f = np.fft.rfftfreq(y.shape[1], 1 / make_data.RATE)
    assert min(abs(f[np.argmax(power)] - p) for p in make_data.PARTIALS) < 25
    for p in make_data.PARTIALS:
        band = np.abs(f - p) < 25
        assert power[band].max() > 20 * np.median(power)
