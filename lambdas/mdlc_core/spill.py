"""The folders DuckDB spills to, one per kind of job and process, removed at exit.

The feature and monitoring jobs keep a DuckDB database for the process (a warm
Lambda's next run reuses it) and, with it, the folder it spills to. DuckDB
names its temporary files by their index only, so two processes on one
machine (the CLI beside a test run, two test workers) must not share one:
each folder carries the process id. DuckDB deletes its files when a database
closes, but not a folder it did not make, so at the process's exit the kept
databases are closed and the folders this process made are removed: a command
or a test run leaves nothing in the temporary folder. A Lambda sandbox's
``/tmp`` goes with the sandbox.

Written here because :mod:`tempfile` has no folder that outlives one ``with``
block yet is cleaned up at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_MADE: set[tuple[int, Path]] = set()
_CLOSERS: list[Callable[[], None]] = []
_LOCK = threading.Lock()


def close_at_exit(close: Callable[[], None]) -> None:
    """Have :func:`remove_folders` call ``close`` (a module's ``close_databases``,
    registered when the module is imported) before it removes the folders."""
    with _LOCK:
        if close not in _CLOSERS:
            _CLOSERS.append(close)


def folder(kind: str, scratch: str | os.PathLike[str] | None = None) -> Path:
    """This process's spill folder for ``kind`` (``features``, ``monitor``), under
    ``scratch`` or the system's temporary folder; made on first use."""
    path = Path(scratch or tempfile.gettempdir()) / f"mdlc-{kind}-spill-{os.getpid()}"
    with _LOCK:
        if (os.getpid(), path) not in _MADE:
            existed = path.exists()
            path.mkdir(parents=True, exist_ok=True)
            if not existed:  # one this process did not make is not its to remove
                _MADE.add((os.getpid(), path))
    return path


def remove_folders() -> None:
    """Close the databases kept for the process and remove the spill folders it
    made (what runs at exit; a forked child removes none of its parent's)."""
    with _LOCK:
        closers = list(_CLOSERS)
    for close in closers:
        close()
    with _LOCK:
        mine = {entry for entry in _MADE if entry[0] == os.getpid()}
        _MADE.difference_update(mine)
    for _, path in mine:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(remove_folders)
