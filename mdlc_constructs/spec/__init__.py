"""The typed model spec. ``load_spec('models/fraud.yaml')`` returns a ``ModelSpec``."""

from .loader import SpecError, load_spec, load_specs, parse_spec
from .model import ModelSpec

__all__ = ["ModelSpec", "SpecError", "load_spec", "load_specs", "parse_spec"]
