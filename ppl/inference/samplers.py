"""One entry point for the MCMC algorithms: ``run_mcmc("nuts" | "hmc" | "mh", ...)``."""
from __future__ import annotations

from typing import Callable, Optional

from ppl.inference.nuts import SamplerResult

ALGORITHMS = ("nuts", "hmc", "mh", "gibbs")
DEFAULT_TARGET = {"nuts": 0.8, "hmc": 0.8, "mh": 0.234, "gibbs": 0.8}


def check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")


def run_mcmc(algorithm: str, logdensity_fn: Callable, data, init, key, *, chains: int, warmup: int, draws: int,
             chunk_size: int, target_accept: Optional[float] = None, max_depth: int = 10, dense_mass: bool = False,
             path_length: Optional[float] = None, num_steps: Optional[int] = None, thin: int = 1,
             callback: Optional[Callable] = None, gibbs_fn: Optional[Callable] = None, devices: Optional[int] = None,
             shard_data: bool = False, restart_stuck: bool = True, fisher_mass: bool = False, low_rank: int = 0,
             call_seconds: Optional[float] = None) -> SamplerResult:
    """Run ``algorithm`` on ``logdensity_fn(u, data)`` from ``init`` (chains, dim), which may be a
    ``DeferredInit`` (every algorithm searches for it while XLA compiles its chunk)."""
    check_algorithm(algorithm)
    if (fisher_mass or low_rank) and algorithm not in ("nuts", "gibbs"):
        raise ValueError(f"the {'fisher' if fisher_mass else 'lowrank'} mass matrix is adapted for nuts and gibbs, "
                         f"not {algorithm}; "
                         "use diag or dense")
    target = DEFAULT_TARGET[algorithm] if target_accept is None else float(target_accept)
    if not 0 < target < 1:
        raise ValueError(f"target_accept must be in (0, 1), got {target}")
    common = dict(chains=chains, warmup=warmup, draws=draws, target_accept=target, chunk_size=chunk_size,
                  dense_mass=bool(dense_mass), thin=thin)
    if algorithm in ("nuts", "gibbs"):       # gibbs: NUTS on the continuous state within exact Gibbs sweeps
        from ppl.inference.nuts import NUTSConfig, sample_nuts
        config = NUTSConfig(max_depth=max_depth, devices=devices, shard_data=bool(shard_data),
                            restart_stuck=bool(restart_stuck), fisher_mass=bool(fisher_mass), low_rank=int(low_rank),
                            call_seconds=call_seconds, **common)
        return sample_nuts(logdensity_fn, data, init, key, config, callback,
                           gibbs_fn=gibbs_fn if algorithm == "gibbs" else None)
    if shard_data:
        raise ValueError("--shard-data is supported by nuts and gibbs")
    common["devices"] = devices
    if algorithm == "hmc":
        from ppl.inference.hmc import HMCConfig, sample_hmc
        extra = {"path_length": float(path_length)} if path_length is not None else {}
        config = HMCConfig(num_steps=num_steps, max_steps=2 ** max_depth, **extra, **common)
        return sample_hmc(logdensity_fn, data, init, key, config, callback)
    from ppl.inference.mh import MHConfig, sample_mh
    return sample_mh(logdensity_fn, data, init, key, MHConfig(**common), callback)
