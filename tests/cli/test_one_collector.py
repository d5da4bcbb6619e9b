"""Every command gets its snapshots from collect.collector.Collector: no cli module branches on
--from (args.from_) except to hand it to Collector.open, nor opens captures, takes snapshots or
runs a sampling loop of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ksight.cli

CLI = Path(ksight.cli.__file__).parent
# common.py defines --from itself (add_from, refuse_from for live-only commands)
MODULES = sorted(p for p in CLI.glob("*.py") if p.name not in ("common.py", "__init__.py"))
ALLOWED = ("Collector.open(args.from_)", "add_from_live_only")
SNAPSHOT_COMMANDS = ("check", "show", "sar", "pagecache")


def _code(path: Path) -> str:
    """The module without comments (a comment may say `--from`)."""
    return "\n".join(re.sub(r"#.*$", "", ln) for ln in path.read_text().splitlines())


def test_modules_found():
    names = {p.stem for p in MODULES}
    assert set(SNAPSHOT_COMMANDS) <= names, names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_from_only_goes_to_collector_open(path):
    code = _code(path)
    for ok in ALLOWED:
        code = code.replace(ok, "")
    lines = [ln.strip() for ln in code.splitlines() if "from_" in ln]
    assert not lines, f"{path.name} uses --from outside Collector.open: {lines}"


@pytest.mark.parametrize("name", SNAPSHOT_COMMANDS)
def test_snapshot_commands_use_the_collector(name):
    code = _code(CLI / f"{name}.py")
    assert "Collector.open(args.from_)" in code
    for own in ("open_capture", "collect.snapshot import take", "LiveRoot", "time.sleep",
                "processes import scan"):
        assert own not in code, f"{name}.py: {own} (the collector does this)"


# reading the kernel past the collector: a Root in a command or a view (views get their data
# from the snapshots a Collector took with a plan: one model, many views)
ROOT_READS = ("col.root", ".capture.roots", "capture.roots[", "LiveRoot(", "DirRoot(",
              "open_root(", ".read_text(", ".read_bytes(", ".readlink(", ".listdir(")
# commands that act on the running kernel (tracefs, lab faults, cleanup), never on a snapshot
LIVE_ACTORS = ("lab.py", "trace.py", "cleanup.py")
VIEWS = sorted((CLI.parent / "views").glob("*.py"))


@pytest.mark.parametrize("path", [p for p in MODULES if p.name not in LIVE_ACTORS] + VIEWS,
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_command_or_view_reads_a_root(path):
    code = _code(path)
    found = [s for s in ROOT_READS if s in code]
    assert not found, f"{path.parent.name}/{path.name} reads the kernel itself ({found}): ask the " \
                      "Collector for it in a plan (collect.plan: process parts, a Few, sources)"


def test_the_root_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def run(args):\n    col = Collector.open(args.from_)\n"
                   "    root = col.root if col.live else col.capture.roots[-1]\n")
    assert [s for s in ROOT_READS if s in _code(bad)] == ["col.root", ".capture.roots",
                                                          "capture.roots["]
