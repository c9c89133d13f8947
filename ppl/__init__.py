"""ppl: a probabilistic programming language for Python.

    import ppl
    model = ppl.load("eight_schools.gm")        # or ppl.compile(source_text)
    post = model.sample(data, chains=4, seed=0)
    print(post.summary())
"""
import os as _os

from .config import gc_paused as _gc_paused

# The cyclic garbage collector waits while JAX and ppl are imported
with _gc_paused():
    import jax as _jax

    from .inference.parallel import configure_xla as _configure_xla

    # On CPU, one XLA host device per core (at least 4), so chains run as separate programs in
    # parallel, and small while loops compiled as one function (ppl.inference.parallel); must
    # happen before JAX starts its backend.
    _configure_xla()

    # Precision: float64 by default (Stan's numerics; README "Precision" gives the measured trade-off);
    # PPL_PRECISION=32 for float32; PPL_PRECISION=auto for float64 on CPU and float32 on an accelerator.
    _precision = _os.environ.get("PPL_PRECISION", "64").strip().lower()
    if _precision == "auto":
        _precision = "64" if _jax.default_backend() == "cpu" else "32"
    if _precision != "32":
        _jax.config.update("jax_enable_x64", True)

    from .errors import DataError, ModelError
    from .model import Model, ModelWarning, compile, load
    from .results import Posterior, combine
    from .data import load_data

__all__ = ["compile", "load", "load_data", "Model", "ModelError", "DataError", "ModelWarning", "Posterior", "combine"]
__version__ = "0.1.0"
