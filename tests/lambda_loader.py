"""The suite's handler loader is the one the package ships to teams
(``mdlc_constructs.testing.load_handler``), so both import the same files."""

from __future__ import annotations

from mdlc_constructs.testing import load_handler

__all__ = ["load_handler"]
