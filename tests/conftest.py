"""Shared test helpers: where the corpora and fixtures live, the root-only skip, and the rule
for external tools: a test that needs a tool skips naming it when the tool is absent, except in
CI (CI set in the environment), where .ci/run installs the tools and their absence is a failure."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from pathlib import Path

import pytest

from ksight.fs import DirRoot

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
# Real kernel text from other projects, read in place (never copied into the project).
CORPORA = HERE.parent.parent / "shared" / "corpora"

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: reproduces a real fault (CI runs as root)")

# CI=true (GitHub Actions, GitLab, ...): .ci/run has installed the tools the tests drive
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _ci_installed_tools() -> frozenset[str]:
    """The tools .ci/run installs when missing: its `command -v TOOL ... || need=...` lines."""
    try:
        text = (HERE.parent / ".ci" / "run").read_text()
    except OSError:
        return frozenset()
    return frozenset(re.findall(r"command -v (\S+) >/dev/null 2>&1 \|\| need=", text))


CI_TOOLS = _ci_installed_tools()


def unavailable(reason: str, *, required_in_ci: bool = True):
    """Skip with the reason; in CI, where the case must be provided, fail with it instead."""
    if IN_CI and required_in_ci:
        pytest.fail(f"{reason} -- CI must provide this (.ci/run installs the tools)", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str, why: str = "") -> str:
    """The path of an external tool the test runs. Absent: skip naming it, or fail in CI when
    .ci/run installs it (a tool CI does not install, e.g. lscpu or ps, skips everywhere)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"needs `{name}` on PATH{': ' + why if why else ''}",
                    required_in_ci=name in CI_TOOLS)
    return path


def corpus(*parts: str) -> Path:
    p = CORPORA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"corpus not present: {p} (expected ../shared/corpora beside the project)")
    return p


def _match(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(parts[1:], pats[1:])


def corpus_files(pattern: str, base: Path | None = None) -> list[Path]:
    """Regular files under the corpora (or base) whose relative path matches pattern ('**' is
    any number of directories), sorted. Never follows a symbolic link: the fixtures keep links as
    captured (procfs proc/26231/root -> /), and glob('**', recursive=True) would walk the whole
    machine through them. Links to files are left out too (they may point outside the tree)."""
    base = CORPORA if base is None else base
    pats = pattern.split("/")
    out = []
    for d, _dirs, files in os.walk(base):  # followlinks=False: linked directories are not entered
        rel = Path(d).relative_to(base).parts
        for f in files:
            p = Path(d, f)
            if not p.is_symlink() and _match([*rel, f], pats):
                out.append(p)
    return sorted(out)


def corpus_text(*parts: str) -> str:
    return corpus(*parts).read_text(errors="replace")


def corpus_root(*parts: str) -> DirRoot:
    return DirRoot(str(corpus(*parts)))


_LABEL = __import__("re").compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_E2E_CACHE: dict = {}


def node_exporter_metrics() -> list[tuple[str, dict[str, str], float]]:
    """node_exporter's e2e-output.txt (its metrics from exactly the corpus files) as
    (name, labels, value) rows: the independent numbers the parser tests compare against."""
    if "rows" not in _E2E_CACHE:
        rows = []
        for line in corpus_text("node_exporter", "e2e-output.txt").split("\n"):
            if not line or line.startswith("#"):
                continue
            if "{" in line:
                name, _, rest = line.partition("{")
                lbl, _, value = rest.rpartition("}")
                labels = dict(_LABEL.findall(lbl))
            else:
                name, _, value = line.partition(" ")
                labels = {}
            rows.append((name, labels, float(value.split()[0])))
        _E2E_CACHE["rows"] = rows
    return _E2E_CACHE["rows"]


def e2e_rows(metric: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of one node_exporter metric."""
    return [(lb, v) for n, lb, v in node_exporter_metrics() if n == metric]


def e2e_prefixed(prefix: str) -> dict[str, float]:
    """{name without prefix: value} for unlabelled metrics whose name starts with prefix."""
    return {n[len(prefix):]: v for n, lb, v in node_exporter_metrics() if n.startswith(prefix) and not lb}


def fixture_text(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text()
