"""No false alarms: on every real snapshot in the corpora, `check` reports nothing at warning or
above unless the data really shows it. The corpora are single snapshots, so only rules that need
one snapshot can fire; each exception below says which data shows the fault and why."""

from __future__ import annotations

import json

import pytest

from ksight.cli.main import main
from tests.conftest import CORPORA

# corpus root -> rule ids that the data really supports (none so far)
EXPECTED: dict[str, set[str]] = {}


def corpus_roots():
    if not CORPORA.exists():
        return []
    roots = []
    for cand in [CORPORA / "node_exporter", CORPORA / "procfs"] + sorted((CORPORA / "pcp" / "unpacked").glob("*")):
        if (cand / "proc").is_dir() or (cand / "sys").is_dir():
            roots.append(cand)
    return roots


@pytest.mark.parametrize("root", corpus_roots(), ids=lambda p: p.name)
def test_corpus_snapshot_raises_no_alarm(root, capsys):
    status = main(["check", "--json", "--from", str(root)])
    doc = json.loads(capsys.readouterr().out)
    serious = {f["id"] for f in doc["findings"] if f["severity"] in ("warning", "critical")}
    assert serious == EXPECTED.get(root.name, set()), doc["findings"]
    assert status in (0, 3)  # 3: a tree without the files any rule needs (e.g. only sys/)
    assert not any("internal error" in n["reason"] for n in doc["not_evaluated"])


@pytest.mark.root
def test_this_machine_at_rest_is_ok(capsys):
    # The suite runs on a quiet test machine: no swap, no memory pressure at rest.
    status = main(["check", "--json", "--interval", "1", "--step", "0.5"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["findings"] == [] or all(f["severity"] == "info" for f in doc["findings"]), doc["findings"]
    assert status == 0
    assert doc["window"]["snapshots"] == 3
