"""ppl: a probabilistic programming language for Python (placeholder, being built)."""
import os as _os

import jax as _jax

# Double precision by default on CPU (Stan's numerics); PPL_PRECISION=32 turns it off.
if _os.environ.get("PPL_PRECISION", "64") != "32":
    _jax.config.update("jax_enable_x64", True)
