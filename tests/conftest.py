"""Shared fixtures. The example stack is synthesized once per test session
(jsii synthesis takes seconds), for both xdist workers, and every template test
reads that one result. How the suite is split between the workers is
``tests/work_units.py``; its two hooks are installed here.
"""

from __future__ import annotations

import fcntl
import functools
import gc
import json
import os
from pathlib import Path
from typing import Any

import botocore.loaders
import botocore.session
import pytest
from syrupy.assertion import SnapshotAssertion

from tests import work_units
from tests.tolerant_snapshots import TolerantAmber

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")  # jsii's banner
# The CDK CLI's AWS SDK on Node.js 20 (aws/aws-sdk-js-v3#7983), as the Makefile.
os.environ.setdefault("AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED", "true")
# aws-cdk-lib's automatic CloudFormation validation of every synthesis, whose
# warnings no test reads: the tests that claim a template family is clean hold
# it to those rules as errors instead (tests/template_rules.py). Set before the
# first import of aws_cdk starts the jsii kernel, which reads it.
os.environ.setdefault("CDK_VALIDATION", "false")

ROOT = Path(__file__).resolve().parents[1]
FRAUD_SPEC = ROOT / "models" / "fraud.yaml"

# Every test's mock_aws() starts from a new boto3 session, and each new botocore
# session parses botocore's endpoints.json (1 MB) and the model of each service
# it makes a client for again: about a tenth of the workers' Python time. One
# loader per process keeps what it parsed; botocore treats that data as
# read-only (the clients of one session already share it).
botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)

# A worker's heap holds hundreds of thousands of objects (jsii proxies, moto's
# state, parsed SQL trees), and at Python's default thresholds (700, 10, 10) the
# cyclic collector scanned them thousands of times: 4.8 s of the 21-day
# lifecycle's 54.7 s, 1.4 s of 51.1 s at these. Cycles are still collected.
gc.set_threshold(50_000, 20, 20)


@pytest.hookimpl(optionalhook=True)  # xdist's; absent under -p no:xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return work_units.scheduler(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    work_units.order(items)


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """syrupy's snapshot, its floats compared to 1e-12 relative: NumPy's log and
    exp give another last bit on another CPU (tests/tolerant_snapshots.py)."""
    return snapshot.use_extension(TolerantAmber)


@pytest.fixture(scope="session")
def fraud_spec():
    from mdlc_constructs.spec import load_spec

    return load_spec(FRAUD_SPEC)


@pytest.fixture(scope="session")
def fraud_config_file(tmp_path_factory, fraud_spec) -> Path:
    """The fraud spec as the JSON file a deployed handler reads."""
    path = tmp_path_factory.mktemp("config") / "mdlc_config.json"
    path.write_text(json.dumps(fraud_spec.as_config()))
    return path


class SessionStack:
    """The session's fraud stack as the tests read it: its name and spec, and,
    for anything else, the construct itself.

    Under xdist one worker synthesizes the app and the other reads the cloud
    assembly it wrote, so this worker may have no construct tree: one is then
    built on first use (``MdlcModelStack`` from the same spec, not synthesized;
    its logical ids and tokens are those of the assembly's). The worker that
    synthesized holds the stack it synthesized.
    """

    def __init__(self, stack_name: str, spec: Any, stack: Any = None) -> None:
        self.stack_name = stack_name
        self.spec = spec
        self._stack = stack

    def __getattr__(self, name: str) -> Any:  # only for what __init__ did not set
        if name.startswith("__") or name == "_stack":
            raise AttributeError(name)
        if self._stack is None:
            from mdlc_constructs.model_stack import MdlcModelStack
            from mdlc_constructs.testing import make_app

            app = make_app(context={"aws:cdk:enable-path-metadata": True})
            self._stack = MdlcModelStack(app, self.stack_name, spec=self.spec)
        return getattr(self._stack, name)


def _shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A folder every xdist worker of this session sees (the session's base
    temporary folder, whose popen-gwN children are the workers'); without xdist,
    one of this run's own."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.getbasetemp().parent / name
        path.mkdir(exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory, fraud_spec) -> tuple[SessionStack, Any]:
    """The example app (fraud stack, both cdk-nag packs), synthesized once per
    session: the first worker that needs it synthesizes into a folder both
    workers share, under a lock; the other waits for it and reads the cloud
    assembly written there (synthesis and cdk-nag cost seconds of jsii each).

    Synthesis fails here, naming the findings, if cdk-nag reports anything
    that is not acknowledged (on both workers: the first writes its message).
    """
    from aws_cdk import cx_api

    shared = _shared_dir(tmp_path_factory, "fraud-synthesized")
    outdir, failed = shared / "cdk.out", shared / "failed.txt"
    name = "Mdlc-fraud"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            pytest.fail(failed.read_text())
        if (shared / "done").exists():
            return SessionStack(name, fraud_spec), cx_api.CloudAssembly(str(outdir))
        from mdlc_constructs.compliance import read_findings
        from mdlc_constructs.model_stack import MdlcModelStack
        from tests.template_rules import rules_app

        # Path metadata as `cdk synth` writes it: the local simulation finds each
        # stage's resources by construct path (normalized templates drop it).
        app = rules_app(outdir=str(outdir), context={"aws:cdk:enable-path-metadata": True})
        stack = MdlcModelStack(app, name, spec=fraud_spec)
        try:
            assembly = app.synth()
        except Exception as error:  # jsii raises RuntimeError with the report path
            findings = "\n".join(str(f) for f in read_findings(outdir))
            failed.write_text(f"synthesis failed: {error}\n{findings}")
            pytest.fail(failed.read_text())
        (shared / "done").touch()
        return SessionStack(name, fraud_spec, stack), assembly


@pytest.fixture(scope="session")
def fraud_stack(synthesized) -> SessionStack:
    return synthesized[0]


@pytest.fixture(scope="session")
def fraud_template(synthesized):
    from aws_cdk.assertions import Template

    stack, assembly = synthesized
    return Template.from_json(assembly.get_stack_by_name(stack.stack_name).template)


@pytest.fixture(scope="session")
def spark():
    """One local PySpark session per test worker, shared by every module that runs
    SQL on Spark (``work_units.SPARK_MODULES``, one work unit, so one JVM per run):
    starting Spark costs seconds. pyspark is in the dev extra and `make install`
    provides Java (`make java`), so a missing one is an error here, not a skip."""
    import os

    from mdlc_core import spark_job

    # The tests' JVM shares 2 cores with the other test worker: one CPU's worth
    # of GC and JIT threads, and the quick C1 compiler only (the queries are
    # small and short-lived), so it does not starve the worker beside it.
    os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:ActiveProcessorCount=1 "
                          "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    session = spark_job.local_session("mdlc-tests")
    session.sparkContext.setLogLevel("ERROR")
    # The tests' queries run on a few hundred rows, where compiling each plan to
    # Java (whole-stage code generation, through Janino and then the JIT) and
    # re-planning at each shuffle (adaptive execution) cost the JVM about a fifth
    # of its CPU for nothing. The answers do not depend on either: the deployed
    # jobs keep Spark's defaults (docs/engines.md, "Tests").
    session.conf.set("spark.sql.codegen.wholeStage", "false")
    session.conf.set("spark.sql.adaptive.enabled", "false")
    yield session
    session.stop()


