"""Where a recorded result came from: the date, the code's commit, the machine."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path


def commit() -> str:
    """The git commit of the fastgan source tree in use, '-dirty' appended when it has
    uncommitted changes; '' outside a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return ""
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def provenance() -> dict:
    import torch

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
