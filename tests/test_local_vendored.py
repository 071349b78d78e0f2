"""The local execution runs a DuckDB asset's handler with this machine's DuckDB.

The quality function's asset carries DuckDB built for Lambda (CPython 3.12+
stable ABI, manylinux x86_64), which need not load here. A stand-in asset
whose vendored ``duckdb`` refuses to import proves which one the handler
gets: loaded by the local Lambda runtime in a fresh interpreter (no duckdb
imported yet), the handler must see the host's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

RUN = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from mdlc_constructs.local.functions import LambdaRuntime, LocalFunction
    runtime = LambdaRuntime()
    runtime.register(LocalFunction(
        name="quality", arn="arn:aws:lambda:us-east-1:123456789012:function:quality",
        logical_id="Quality", stack="S", handler="index.handler", code=Path(sys.argv[1]),
        environment={}, timeout=60, memory=3008, role_arn=None))
    result = runtime.invoke("quality", b"{}")
    print(json.dumps({"error": result.error, "payload": json.loads(result.payload)}))
''')


def asset(tmp_path: Path, packages: list[str]) -> Path:
    code = tmp_path / "code"
    (code / "duckdb").mkdir(parents=True)
    (code / "duckdb" / "__init__.py").write_text(
        'raise ImportError("the build for Lambda, not for this machine")\n')
    (code / "index.py").write_text(
        "import duckdb\n\n\ndef handler(event, context):\n"
        "    return {'file': duckdb.__file__, 'version': duckdb.__version__}\n")
    (code / "mdlc_vendored.json").write_text(json.dumps(
        {"packages": packages, "platform": "manylinux_2_28_x86_64", "python": "3.14"}))
    return code


def invoke(code: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(code)], capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_handler_imports_the_hosts_duckdb_not_the_assets(tmp_path: Path) -> None:
    import duckdb

    code = asset(tmp_path, ["duckdb==2.0.1", "sqlglot==30.31.0"])
    result = invoke(code)
    assert result["error"] is None, result
    assert result["payload"] == {"file": duckdb.__file__, "version": duckdb.__version__}


def test_a_vendored_package_the_host_lacks_fails_naming_it(tmp_path: Path) -> None:
    code = asset(tmp_path, ["duckdb==2.0.1", "mdlc_no_such_package==1.0"])
    result = invoke(code)
    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] == "Runtime.ImportModuleError"
    assert "vendors mdlc_no_such_package" in result["payload"]["errorMessage"]
