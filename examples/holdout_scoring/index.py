"""Example hold-out scorer for examples/custom_evaluation.py (a placeholder a team
replaces with its own scoring: load the model artifact, score the hold-out rows,
compute the spec's metric)."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise NotImplementedError(
        f"score {event.get('model_data')} on {event.get('holdout')} and return "
        f"{{'metric': {event.get('metric')!r}, 'value': <float>}}"
    )
