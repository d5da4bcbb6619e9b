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


def fixture_text(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text()
