"""DuckDB's spill folders: one per kind and process, gone when the process exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mdlc_core import spill

# A process that sorts under a small memory limit in the feature job's kept
# database and opens the monitoring job's, each on its spill folder.
_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from mdlc_core import spill
    from mdlc_core.sql import feature_window, monitoring_files

    scratch = Path(sys.argv[1])
    features = spill.folder("features", scratch)
    with feature_window.session(features, memory_limit="64MB") as con:
        con.execute("SET preserve_insertion_order = false")
        rows = con.execute("SELECT count(*) FROM (SELECT random() AS r FROM range(3000000) "
                           "ORDER BY r)").fetchone()[0]
    with monitoring_files.DaySession(memory_limit="64MB",
                                     temp_directory=spill.folder("monitor", scratch)):
        pass
    print(json.dumps({"rows": rows, "names": sorted(p.name for p in scratch.iterdir())}))
""")


def test_each_process_has_its_own_folder_which_its_exit_removes(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    ran = json.loads(result.stdout)  # the child's listing, while it ran
    assert ran["rows"] == 3_000_000
    pid = ran["names"][0].rsplit("-", 1)[1]
    assert ran["names"] == [f"mdlc-features-spill-{pid}", f"mdlc-monitor-spill-{pid}"]
    assert pid != str(os.getpid())
    assert list(tmp_path.iterdir()) == []  # nothing left once it exited


def test_a_folder_that_was_there_is_kept(tmp_path: Path) -> None:
    """Only what this process made is removed at exit: not a team's own folder."""
    existing = tmp_path / f"mdlc-features-spill-{os.getpid()}"
    existing.mkdir()
    assert spill.folder("features", tmp_path) == existing
    spill.remove_folders()
    assert existing.is_dir()
