"""Each function's code asset holds only the spec sections its handler reads (issue #17).

Every function used to bundle the whole spec, so any edit (a monitoring
threshold, the owner) changed every function's code asset and redeployed
them all. The sections come from ``HANDLER_CONFIG_SECTIONS``; reading one
left out fails loudly instead of looking like a spec without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdlc_constructs.functions import (
    CONFIG_FILE_NAME,
    HANDLER_CONFIG_SECTIONS,
    handler_config,
    stage_code,
)
from mdlc_constructs.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = ROOT / "lambdas"


@pytest.fixture(scope="module")
def config():
    return load_spec(ROOT / "models" / "fraud.yaml").as_config()


def _deployed(handler: str, config: dict) -> dict:
    return json.loads((Path(stage_code(handler, config)) / CONFIG_FILE_NAME).read_text())


def test_every_library_handler_that_reads_the_spec_is_listed():
    readers = {p.parent.name for p in LAMBDAS.glob("*/index.py")
               if "load_config" in p.read_text()}
    assert readers == set(HANDLER_CONFIG_SECTIONS)


@pytest.mark.parametrize("handler", sorted(HANDLER_CONFIG_SECTIONS))
def test_an_asset_holds_its_handlers_sections_and_names_the_others(handler, config):
    deployed = _deployed(handler, config)
    omitted = deployed.pop("_omitted")
    assert set(deployed) == {"name", *HANDLER_CONFIG_SECTIONS[handler]}
    assert set(deployed) | set(omitted) == set(config)
    assert {k: config[k] for k in deployed} == deployed


def test_a_monitoring_edit_changes_only_the_functions_that_read_monitoring(config):
    edited = json.loads(json.dumps(config))
    edited["monitoring"]["closed_loop"]["min_precision"] = 0.123
    edited["owner"] = "another-team"
    changed = {h for h in HANDLER_CONFIG_SECTIONS
               if stage_code(h, config) != stage_code(h, edited)}
    assert changed == {"model_monitor", "processing_job"}


def test_a_team_handler_folder_gets_the_whole_spec(config, tmp_path):
    assert handler_config(tmp_path, config) == config
    assert handler_config("not_a_library_handler", config) == config


def test_reading_a_section_left_out_fails_naming_it_and_the_remedy(config):
    from mdlc_core.runtime_config import SectionNotDeployed, parse_config

    deployed = parse_config(_deployed("quality_check", config))
    assert deployed["quality"] == config["quality"]
    for read in (lambda: deployed["monitoring"], lambda: deployed.get("monitoring"),
                 lambda: deployed.get("features", {})):
        with pytest.raises(SectionNotDeployed, match=r"'(monitoring|features)' is not deployed"
                                                   r".*HANDLER_CONFIG_SECTIONS"):
            read()
    with pytest.raises(KeyError):
        deployed["no-such-section"]  # an unknown key is an ordinary KeyError
    assert deployed.get("no-such-section", 1) == 1
