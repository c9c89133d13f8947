import os
import sys

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("PPL_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
EXAMPLES = os.path.join(ROOT, "examples")

sys.path.insert(0, HERE)
