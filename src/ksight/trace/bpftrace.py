"""bpftrace backend (optional): used only when bpftrace is installed and actually runs.

Everything in ksight works without it; recipes use tracefs or perf. This module only answers
"is bpftrace usable here, and if not, why" so that ksight can say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def available() -> tuple[bool, str]:
    exe = shutil.which("bpftrace")
    if exe is None:
        return False, "bpftrace is not installed (optional; tracefs and perf are used instead)"
    if os.geteuid() != 0:
        return False, "bpftrace needs root"
    try:
        r = subprocess.run([exe, "-e", "BEGIN { exit(); }"], capture_output=True, text=True,
                           timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"bpftrace does not run: {exc}"
    if r.returncode != 0:
        return False, f"bpftrace does not run: {(r.stderr or r.stdout).strip()[:200]}"
    return True, exe
