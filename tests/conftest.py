"""Shared test helpers: where the corpora and fixtures live, and the root-only skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksight.fs import DirRoot

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
# Real kernel text from other projects, read in place (never copied into the project).
CORPORA = HERE.parent.parent / "shared" / "corpora"

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: reproduces a real fault (CI runs as root)")


def corpus(*parts: str) -> Path:
    p = CORPORA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"corpus not present: {p} (expected ../shared/corpora beside the project)")
    return p


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
