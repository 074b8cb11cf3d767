"""Where the repository is: the one place that counts parent folders from a source file, so moving a module
cannot leave one of several copies pointing at the wrong root. It imports nothing of the suite."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
