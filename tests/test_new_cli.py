"""`mdlc new`: scaffolds a valid spec from the example, never overwrites."""

from __future__ import annotations

from mdlc_constructs.cli import EXIT_OK, EXIT_USAGE, main
from mdlc_constructs.spec import load_spec


def test_new_writes_a_valid_spec_named_after_the_model(tmp_path, capsys):
    assert main(["new", "chargeback", "--dir", str(tmp_path), "--owner", "disputes"]) == EXIT_OK
    spec = load_spec(tmp_path / "chargeback.yaml")
    assert (spec.name, spec.owner) == ("chargeback", "disputes")
    assert spec.description == "Describe what chargeback predicts."
    # The example's comments stay: the scaffold is a starting point to read.
    assert (tmp_path / "chargeback.yaml").read_text().startswith("#")
    assert "chargeback.yaml: created" in capsys.readouterr().out


def test_new_copies_another_spec(tmp_path):
    main(["new", "first", "--dir", str(tmp_path)])
    assert main(["new", "second", "--from", str(tmp_path / "first.yaml"),
                 "--dir", str(tmp_path)]) == EXIT_OK
    first, second = load_spec(tmp_path / "first.yaml"), load_spec(tmp_path / "second.yaml")
    assert second.name == "second"
    assert second.training == first.training


def test_new_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "fraud2.yaml"
    target.write_text("keep me")
    assert main(["new", "fraud2", "--dir", str(tmp_path)]) == EXIT_USAGE
    assert target.read_text() == "keep me"
    assert "exists; not overwriting" in capsys.readouterr().err


def test_new_rejects_a_bad_name_with_the_reason(tmp_path, capsys):
    for name in ("Fraud", "2fraud", "fraud_model", "x" * 32):
        assert main(["new", name, "--dir", str(tmp_path)]) == EXIT_USAGE
        assert "invalid NAME" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_new_rejects_an_invalid_source(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nowner: x\n")
    assert main(["new", "ok", "--from", str(bad), "--dir", str(tmp_path)]) == EXIT_USAGE
    assert "is not a valid spec" in capsys.readouterr().err
    assert not (tmp_path / "ok.yaml").exists()
