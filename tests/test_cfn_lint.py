"""cfn-lint finds no errors in the synthesized example templates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_templates_have_no_cfn_lint_errors(synthesized, tmp_path):
    stack, assembly = synthesized
    path = tmp_path / f"{stack.stack_name}.template.json"
    path.write_text(json.dumps(assembly.get_stack_by_name(stack.stack_name).template))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert not errors, "\n".join(errors)
    # cfn-lint exits 0 clean, 4 warnings, 8 informational; 2 means errors
    assert result.returncode in (0, 4, 8, 12), result.stdout + result.stderr
    assert Path(path).stat().st_size > 0
