"""Whole commands run as child processes and measured (wall time, peak RSS); section 4's ``time_commands``."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Sequence

from bench.benchmark.rows import Row
from bench.benchmark.settings import REPO


def time_commands(commands: Sequence[tuple[str, str]], env: dict[str, str] | None = None,
                  rows: list[Row] | None = None) -> list[Row]:
    """Wall time and peak RSS of whole shell commands, each (label, command) run once to completion.

    PART 4 HOOK: ``make bench METHOD=coreset`` and the 6-method x 5-ratio comparison go here, e.g.
    ``time_commands([("make bench METHOD=coreset", "make bench METHOD=coreset")], env)``.
    """
    out = rows if rows is not None else []
    for label, command in commands:
        seconds, peak_kib, code = run_measured(["bash", "-c", command], env)
        if code != 0:
            raise RuntimeError(f"{label!r} exited with status {code}")
        out.append(Row("sweep", label, "wall clock, one run", "wall_seconds", [seconds], "s"))
        out.append(Row("sweep", label, "largest process", "peak_rss_mib", [peak_kib / 1024], "MiB"))
    return out


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB of the largest process in the tree, exit status) of a command.

    ``wait4`` gives this child's own rusage: ru_maxrss is the peak of the child or of its largest
    waited-for descendant, not a sum."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 and proc.stderr is not None:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return time.perf_counter() - start, usage.ru_maxrss, proc.returncode
