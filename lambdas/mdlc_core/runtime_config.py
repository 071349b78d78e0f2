"""The spec a handler was deployed with.

The function factory writes the model spec (as plain JSON) into each
function's code asset as ``mdlc_config.json``, so handlers read the same
spec the stack was synthesized from, with no size limit of environment
variables. Tests point ``MDLC_CONFIG_FILE`` at their own file.

A library handler's asset holds only the spec sections it reads
(``mdlc_constructs.functions.HANDLER_CONFIG_SECTIONS``), so an edit of another
section leaves the function unchanged. The file lists the sections left out
under ``_omitted``; reading one of them fails with :class:`SectionNotDeployed`
rather than looking like a spec without that section (``.get`` would
otherwise return None and, say, score without derived features).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

CONFIG_FILE_NAME = "mdlc_config.json"
#: Key of the file's list of spec sections this function was deployed without.
OMITTED_KEY = "_omitted"


class SectionNotDeployed(KeyError):
    """A handler read a spec section its function was deployed without."""


class DeployedConfig(dict[str, Any]):
    """The deployed sections of the spec; the omitted ones raise when read."""

    def __init__(self, sections: dict[str, Any], omitted: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(sections)
        self.omitted = frozenset(omitted) - set(sections)

    def _not_deployed(self, key: str) -> SectionNotDeployed:
        return SectionNotDeployed(
            f"spec section {key!r} is not deployed with this function (it has "
            f"{sorted(self)}); add it to the handler's entry in "
            "mdlc_constructs.functions.HANDLER_CONFIG_SECTIONS")

    def __missing__(self, key: str) -> Any:
        if key in self.omitted:
            raise self._not_deployed(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in self.omitted:
            raise self._not_deployed(key)
        return super().get(key, default)


def parse_config(data: dict[str, Any]) -> DeployedConfig:
    """The file's JSON as a :class:`DeployedConfig`."""
    data = dict(data)
    omitted = data.pop(OMITTED_KEY, ())
    return DeployedConfig(data, omitted)


@cache
def load_config() -> DeployedConfig:
    """The deployed spec; cached for the life of the execution environment."""
    default = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / CONFIG_FILE_NAME
    path = Path(os.environ.get("MDLC_CONFIG_FILE", default))
    with path.open(encoding="utf-8") as handle:
        return parse_config(json.load(handle))
