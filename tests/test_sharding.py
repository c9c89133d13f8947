"""Chains and data split across devices with jax.sharding, on CPU with 4 forced host devices
(a subprocess: the device count must be set before JAX starts). Sharding must not change the
draws: the same seed gives the same chains as the unsharded run."""
import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, os, sys
import numpy as np
import jax
import ppl
assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
X = rng.normal(size=(400, 3))
y = (rng.uniform(size=400) < 1 / (1 + np.exp(-(X @ np.array([1.0, -1.0, 0.5]))))).astype(int)
model = ppl.compile("data X: real[N, K]\nbeta: real[K] ~ normal(0, 2)\ny ~ bernoulli_logit(X @ beta)")
data = {"X": X, "y": y}
kw = dict(chains=4, warmup=150, draws=100, seed=3)
plain = model.sample(data, **kw)                 # default: one chain per host device
vmapped = model.sample(data, devices=1, **kw)    # all chains vectorised on one device
chains = model.sample(data, devices=4, **kw)
both = model.sample(data, devices=4, shard_data=True, **kw)
print(json.dumps({
    "devices": [plain.meta["devices"], vmapped.meta["devices"]],
    "vmap_equal": float(np.max(np.abs(plain["beta"] - vmapped["beta"]))),
    "chains_equal": float(np.max(np.abs(plain["beta"] - chains["beta"]))),
    "data_equal": float(np.max(np.abs(plain["beta"] - both["beta"]))),
    "mean": plain["beta"].mean(axis=(0, 1)).tolist(),
}))
"""


def test_chains_and_data_sharded_over_four_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, cwd=root,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # the same chains: sharding changes where the work runs, not the algorithm; XLA may reassociate
    # floating-point sums across shards, and NUTS trajectories amplify such rounding slowly, so the
    # short runs agree to far better than their Monte Carlo error (posterior sd ~ 0.1)
    assert out["devices"] == [4, 1]
    assert out["vmap_equal"] < 1e-3
    assert out["chains_equal"] < 1e-3
    assert out["data_equal"] < 1e-3
    assert out["mean"][0] > 0 and out["mean"][1] < 0
