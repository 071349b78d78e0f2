"""The local PySpark session of ``--engine spark``, or a usage error naming what is missing.

Shared by ``mdlc quality`` and ``mdlc features``: both run the compiled SQL on
PySpark in local mode (``mdlc_core.spark_job.local_session``), which needs the
``pyspark`` package (the dev extra) and a Java runtime (``make java``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

from . import UsageError


def local_spark(app_name: str) -> Any:
    """PySpark in local mode, or a :class:`UsageError` saying what is missing."""
    if importlib.util.find_spec("pyspark") is None:
        raise UsageError("--engine spark needs PySpark: pip install 'mdlc-constructs[dev]' "
                         "(or pyspark) and a Java runtime (make java)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise UsageError("--engine spark needs a Java runtime for PySpark: none on PATH and "
                         "JAVA_HOME is not set (make java installs one on Debian/Ubuntu)")
    from mdlc_core import spark_job

    return spark_job.local_session(app_name)
