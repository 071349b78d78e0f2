"""Which commit a deployment was built from, for every model version's lineage."""

from __future__ import annotations

import os

from constructs import Construct

#: Context key (and, for local runs, the environment variable
#: ``MDLC_CODE_VERSION``) naming the commit the app is synthesized from.
CODE_VERSION_CONTEXT = "mdlc:codeVersion"
CODE_VERSION_ENV = "MDLC_CODE_VERSION"
#: What lineage records when nothing says which commit this is.
UNKNOWN_CODE_VERSION = "unknown"


def code_version(scope: Construct) -> str:
    """The commit ``scope`` is synthesized from: context ``mdlc:codeVersion``, else
    the ``MDLC_CODE_VERSION`` environment variable, else ``'unknown'``.

    The training workflow records it in every model version it registers
    (``MetadataProperties.CommitId`` and ``mdlc:code-version``).
    """
    value = scope.node.try_get_context(CODE_VERSION_CONTEXT) or os.environ.get(CODE_VERSION_ENV)
    return str(value).strip() if value and str(value).strip() else UNKNOWN_CODE_VERSION


__all__ = ["CODE_VERSION_CONTEXT", "CODE_VERSION_ENV", "UNKNOWN_CODE_VERSION", "code_version"]
