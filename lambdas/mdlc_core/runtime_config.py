"""The spec a handler was deployed with.

The function factory writes the model spec (as plain JSON) into each
function's code asset as ``mdlc_config.json``, so handlers read the same
spec the stack was synthesized from, with no size limit of environment
variables. Tests point ``MDLC_CONFIG_FILE`` at their own file.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

CONFIG_FILE_NAME = "mdlc_config.json"


@cache
def load_config() -> dict[str, Any]:
    """The deployed spec; cached for the life of the execution environment."""
    default = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / CONFIG_FILE_NAME
    path = Path(os.environ.get("MDLC_CONFIG_FILE", default))
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
