"""Whether a folder or a file can be written, found out without leaving anything behind: what the preflight
asks of every store and folder, and what the Optuna storage checks ask of theirs (``bench.studies``). A module
of its own, below both, so neither imports the other's layer."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def folder_problem(path: Path) -> str | None:
    """Why files cannot be written in the folder ``path`` (made, with its parents, where missing), or None.

    Nothing stays behind: a probe file is created and removed in the folder, or, when the folder is still to
    be made, in its nearest existing ancestor (whoever can write there can make the rest). A regular file in
    the way (``<file>/sub``) is a problem for every user, root included; a folder without write permission
    for everyone but root (for whom permissions do not block writes, so the probe rightly succeeds).
    """
    target = path.expanduser().absolute()
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-check-"):
            pass
    except OSError as e:
        return f"cannot write in {probe}: {e.strerror or e}"
    return None


def file_problem(path: Path) -> str | None:
    """Why the file ``path`` (existing, or to be created) cannot be written, or None; writes nothing that stays."""
    target = path.expanduser().absolute()
    if target.exists():
        if target.is_dir():
            return f"{target} is a folder, not a file"
        if not os.access(target, os.W_OK):
            return f"{target} is read-only"
        return None
    return folder_problem(target.parent)
