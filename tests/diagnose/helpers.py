"""Build snapshots for rule tests from real kernel text with a few counters changed.

The base text is a real /proc/vmstat etc. from the corpora; a test copies it into a tree,
edits the lines it needs, and takes snapshots through the same collector the CLI uses.
"""

from __future__ import annotations

import re
from pathlib import Path

from ksight.collect.snapshot import take
from ksight.fs import DirRoot


def set_counter(text: str, name: str, value: int) -> str:
    """Set 'name value' in vmstat-like text (append the line when the kernel did not have it)."""
    pat = re.compile(rf"^{re.escape(name)} \d+$", re.M)
    if pat.search(text):
        return pat.sub(f"{name} {value}", text)
    return text.rstrip("\n") + f"\n{name} {value}\n"


def counter(text: str, name: str) -> int | None:
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def tree(base: Path, files: dict[str, str]) -> DirRoot:
    for rel, text in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return DirRoot(str(base))


def snapshots(tmp_path: Path, states: list[dict[str, str]], sources=None, step_s: float = 1.0):
    """One snapshot per dict of files; uptime advances by step_s between them."""
    out = []
    for i, files in enumerate(states):
        files = dict(files)
        files.setdefault("proc/uptime", f"{1000 + i * step_s:.2f} 1900.00\n")
        root = tree(tmp_path / f"s{i}", files)
        out.append(take(root, sources=sources, taken_at=1_700_000_000 + i * step_s))
    return out
