"""docs/spec.md's field reference is generated from the spec models and kept
current (issue #13 item 11: `training.validation_fraction` was left out)."""

from __future__ import annotations

import re
from pathlib import Path

from mdlc_constructs.spec import ModelSpec, reference

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "spec.md"


def _sections() -> list[tuple[str, type]]:
    sections = reference._Sections()
    sections.visit("", ModelSpec)
    return sections.order


def test_docs_spec_md_is_up_to_date():
    text = PAGE.read_text(encoding="utf-8")
    assert reference.rewrite(text) == text, (
        "docs/spec.md's field reference is stale: run "
        "python -m mdlc_constructs.spec.reference docs/spec.md"
    )


def test_every_field_of_every_model_has_a_row_and_a_meaning():
    assert reference.undocumented() == [], "give these fields a Field(description=...)"
    text = PAGE.read_text(encoding="utf-8")
    tables = dict(re.findall(r"^### (.+?)\n(.*?)(?=^### |<!-- END)", text, re.M | re.S))
    expected = {title: list(model.model_fields) for title, model in _sections()}
    found = {title: re.findall(r"^\| `(\w+)` \|", body, re.M) for title, body in tables.items()}
    assert found == expected
    assert "validation_fraction" in found["training"]


def test_check_exits_1_on_a_stale_page_and_rewrite_fixes_it(tmp_path, capsys):
    stale = tmp_path / "spec.md"
    text = PAGE.read_text(encoding="utf-8")
    stale.write_text(re.sub(r"^\| `validation_fraction` .*\n", "", text, flags=re.M))
    assert reference.main([str(stale), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert reference.main([str(stale)]) == 0
    assert stale.read_text() == text
    assert reference.main([str(stale), "--check"]) == 0


def test_a_page_without_the_markers_is_refused(tmp_path, capsys):
    page = tmp_path / "spec.md"
    page.write_text("# no reference here\n")
    assert reference.main([str(page)]) == 2
    assert "no field reference markers" in capsys.readouterr().err
