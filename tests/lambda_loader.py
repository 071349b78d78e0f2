"""Import a handler from lambdas/<name>/index.py under a unique module name.

Every handler file is called index.py (as deployed), so tests cannot import
them as plain modules; this loads each one fresh, after the test has set the
environment variables and moto mocks the handler reads at import time.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

LAMBDAS = Path(__file__).resolve().parents[1] / "lambdas"


def load_handler(name: str) -> ModuleType:
    path = LAMBDAS / name / "index.py"
    module_name = f"mdlc_handler_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader, f"no handler at {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
