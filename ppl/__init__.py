"""ppl: a probabilistic programming language for Python.

    import ppl
    model = ppl.load("eight_schools.gm")        # or ppl.compile(source_text)
    post = model.sample(data, chains=4, seed=0)
    print(post.summary())
"""
import os as _os

import jax as _jax

from .inference.parallel import request_host_devices as _request_host_devices

# On CPU, one XLA host device per core (at least 4), so chains run as separate programs in
# parallel (ppl.inference.parallel); must happen before JAX starts its backend.
_request_host_devices()

# Double precision by default (Stan's numerics); PPL_PRECISION=32 turns it off.
if _os.environ.get("PPL_PRECISION", "64") != "32":
    _jax.config.update("jax_enable_x64", True)

from .errors import DataError, ModelError  # noqa: E402
from .model import Model, ModelWarning, compile, load  # noqa: E402
from .results import Posterior  # noqa: E402
from .data import load_data  # noqa: E402

__all__ = ["compile", "load", "load_data", "Model", "ModelError", "DataError", "ModelWarning", "Posterior"]
__version__ = "0.1.0"
