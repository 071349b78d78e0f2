"""The feature flags the library is tested with, and make_app with a team's own.

One source of truth: ``mdlc_constructs/feature_flags.json`` (package data,
what ``make_app()`` uses from a wheel). The repository's cdk.json carries the
same flags for the example app and ``cdk synth``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdlc_constructs.testing import (
    CdkJsonError,
    feature_flags,
    load_handler,
    make_app,
    read_cdk_json,
)

ROOT = Path(__file__).resolve().parents[1]
STRENGTH = "@aws-cdk/core:defaultCrossStackReferences"


def test_the_repository_cdk_json_has_the_packaged_flags():
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    flags = {key: value for key, value in context.items() if not key.startswith("mdlc:")}
    assert flags == feature_flags()


def test_the_flags_are_read_from_the_package_not_the_checkout():
    packaged = json.loads((ROOT / "mdlc_constructs" / "feature_flags.json").read_text())
    assert feature_flags() == packaged
    assert packaged[STRENGTH] == "both"
    assert packaged["@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy"] is True


def test_make_app_without_a_cdk_json_uses_the_library_flags():
    app = make_app(compliance=False)
    for key, value in feature_flags().items():
        assert app.node.try_get_context(key) == value, key


def test_make_app_takes_the_teams_cdk_json_instead(tmp_path):
    (tmp_path / "cdk.json").write_text(json.dumps({
        "app": "python3 app.py", "context": {STRENGTH: "weak", "team:owner": "fraud"}}))
    for given in (tmp_path / "cdk.json", str(tmp_path / "cdk.json"), tmp_path):
        app = make_app(compliance=False, cdk_json=given)
        assert app.node.try_get_context(STRENGTH) == "weak"
        assert app.node.try_get_context("team:owner") == "fraud"
        # Only the team's flags: none of the library's comes along.
        assert app.node.try_get_context("@aws-cdk/aws-iam:minimizePolicies") is None


def test_a_context_mapping_and_context_overrides(tmp_path):
    app = make_app(compliance=False, cdk_json={STRENGTH: "strong"},
                   context={"aws:cdk:enable-path-metadata": True})
    assert app.node.try_get_context(STRENGTH) == "strong"
    assert app.node.try_get_context("aws:cdk:enable-path-metadata") is True
    assert app.node.try_get_context("@aws-cdk/aws-iam:minimizePolicies") is None


def test_cdk_context_json_beside_it_is_merged_as_the_cli_does(tmp_path):
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {STRENGTH: "weak", "a": 1}}))
    (tmp_path / "cdk.context.json").write_text(json.dumps({"a": 2, "lookup": "cached"}))
    assert read_cdk_json(tmp_path / "cdk.json") == {STRENGTH: "weak", "a": 2, "lookup": "cached"}


def test_a_cdk_json_without_context_gives_no_flags(tmp_path):
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "python3 app.py"}))
    assert read_cdk_json(tmp_path) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such cdk.json"),
        ('{"context": {"a": 1,}}', "cdk.json is not valid JSON: Expecting property name"),
        ("[1, 2]", "cdk.json must be a JSON object, got list"),
        ('{"context": ["a"]}', '"context" must be a JSON object of context keys, got list'),
    ],
)
def test_a_bad_cdk_json_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "cdk.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CdkJsonError) as raised:
        make_app(compliance=False, cdk_json=path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_bad_cdk_context_json_is_named_too(tmp_path):
    (tmp_path / "cdk.json").write_text("{}")
    (tmp_path / "cdk.context.json").write_text("{oops")
    with pytest.raises(CdkJsonError, match=r"cdk\.context\.json: cdk\.context\.json is not valid"):
        read_cdk_json(tmp_path)


def test_load_handler_loads_each_time_anew(monkeypatch):
    """Handlers read their environment at import: a second load sees a new one."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    from moto import mock_aws

    with mock_aws():
        first = load_handler("quality_check")
        second = load_handler("quality_check")
    assert first is not second and callable(second.handler)
    assert first.__file__ == second.__file__
    assert Path(first.__file__).parent.name == "quality_check"


def test_load_handler_names_the_handlers_there_are():
    with pytest.raises(LookupError, match=r"no Lambda handler 'quality'.*quality_check"):
        load_handler("quality")


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True], ids=["model-stack", "shared-platform"])
def test_cdk_synth_of_the_example_prints_nothing_but_its_result(tmp_path, shared):
    """`cdk synth` of the example warns about nothing: every flag is configured,
    jsii's banner is silenced as the Makefile silences it, the SageMaker SDK
    logs nothing, and on a shared platform (weak references, exports kept) the
    example app acknowledges aws-cdk-lib's "both is transitional" reminder."""
    cli = ROOT / ".cdk-cli" / "node_modules" / ".bin" / "cdk"
    # make test installs it: a missing CLI is a broken install, never a pass.
    assert cli.exists(), f"the pinned CDK CLI is not installed at {cli}: run `make install`"
    # Nor the suite's CDK_VALIDATION (conftest): a user's synthesis validates.
    env = {**{k: v for k, v in os.environ.items() if k != "CDK_VALIDATION"},
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           # The CLI's AWS SDK on Node.js 20 (aws/aws-sdk-js-v3#7983), as the Makefile.
           "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [str(cli), "synth", "--quiet", "--app", f"{sys.executable} app.py",
         "-c", f"mdlc:sharedPlatform={str(shared).lower()}", "-o", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = [line for line in output.splitlines() if line.strip()]
    expected = [
        f"Successfully synthesized to {out}",
        "Supply a stack id (Mdlc-Platform, Mdlc-fraud) to display its template.",
    ] if shared else []
    assert lines == expected, output
