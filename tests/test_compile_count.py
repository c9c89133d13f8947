"""How many XLA programs a fit compiles, counted in a fresh process (a count, not a timing).

In a cold process every eager ``jax.numpy`` operation is an XLA compilation of 10-40 ms; the
data checks at bind time once cost ~0.4 s of them on logistic regression. Binding now compiles
nothing, and a NUTS fit, ADVI, an optimisation and prior simulation compile only their own programs.
"""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, logging, sys
import numpy as np
import ppl, jax
names = []
class Log(logging.Handler):
    def emit(self, rec):
        msg = rec.getMessage()
        if msg.startswith("Compiling "):
            names.append(msg.split(" with ")[0][len("Compiling "):])
jax.config.update("jax_log_compiles", True)
logging.getLogger("jax").addHandler(Log())
logging.getLogger("jax").setLevel(logging.WARNING)
logging.getLogger("jax").propagate = False
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3))
data = {"X": X, "y": (rng.uniform(size=200) < 0.5).astype(int), "k": rng.poisson(3.0, 50),
        "g": rng.integers(0, 3, 37), "z": rng.normal(size=37), "s": rng.uniform(1, 2, 37),
        "u": rng.uniform(1, 2, 23), "v": rng.normal(size=23), "q": rng.normal(size=3)}
m = ppl.compile('''
data X: real[N, D]
data g: int[M]
data u: real[K]
data z: real[M]
data s: real[M]
alpha ~ normal(0, 1)
beta: real[D] ~ normal(0, 1)
lam: real<lower=0> ~ gamma(2, 1)
a: real[3] ~ normal(0, 1)
w ~ dirichlet(ones(3))
y ~ bernoulli_logit(alpha + X @ beta)
k ~ poisson(lam)
z ~ normal(a[g] * w[g], s)
log(u) / log(10) - 2 * u ~ normal(alpha, lam)
h[0] = u[0]
for t in range(1, K) {
  h[t] = 0.5 * h[t - 1] * alpha + u[t]
}
v ~ normal(h, lam)
q ~ multi_normal_cholesky(zeros(3), cholesky(lam * identity(3) + 0.5))
''')
import ppl.inference.samplers  # the sampler's imports (BlackJAX computes a constant at import)
start = len(names)
m.bind(data)
bound = names[start:]
post = m.sample(data, chains=2, warmup=50, draws=20, seed=0)
got = {"bind": bound, "sample": names[start + len(bound):]}
for what, fit in (("vi", lambda: m.vi(data, seed=0, max_iter=200, draws=50)),
                  ("optimize", lambda: m.optimize(data, seed=0, laplace_draws=50)),
                  ("prior", lambda: m.prior(data, draws=50, seed=0))):
    before = len(names)
    fit()
    got[what] = names[before:]
print(json.dumps(got))
"""


def test_binding_compiles_nothing_and_a_fit_only_its_programs():
    env = dict(os.environ, PPL_CACHE="0", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["bind"] == [], f"binding compiled XLA programs: {got['bind']}"
    # the initial-point search, the NUTS chunk, the generated quantities; nothing eager
    assert len(got["sample"]) <= 3, f"a NUTS fit compiled: {got['sample']}"
    # ADVI: the starting point's search, its chunk, its draws, the generated quantities; L-BFGS: the
    # search, the minimiser, the Laplace Hessian, the generated quantities; prior: the simulation.
    # Keys come from numpy and set-up arrays are numpy, so nothing eager (each was 10-110 ms)
    assert len(got["vi"]) <= 4, f"ADVI compiled: {got['vi']}"
    assert len(got["optimize"]) <= 4, f"optimize compiled: {got['optimize']}"
    assert got["prior"] == ["jit(simulate)"], f"prior compiled: {got['prior']}"
