"""Counting what a traced program holds: each call site of a jitted log density in a sampler's
chunk is a copy of it that XLA compiles (tests/test_nuts.py, tests/test_hmc_mh.py)."""
from jax.extend.core import ClosedJaxpr, Jaxpr


def calls_of(name, jaxpr) -> int:
    """The equations of ``jaxpr`` (nested ones included) that call the jitted function ``name``."""
    found = 0
    for eqn in jaxpr.eqns:
        found += eqn.primitive.name in ("pjit", "jit") and eqn.params.get("name") == name
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, (ClosedJaxpr, Jaxpr)):
                    found += calls_of(name, sub.jaxpr if isinstance(sub, ClosedJaxpr) else sub)
    return found
