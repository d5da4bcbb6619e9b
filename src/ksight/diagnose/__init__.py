"""Diagnosis: rules read the snapshot model and return findings.

- finding.py: what a diagnosis says (Finding, Evidence, Action, Subject) — the JSON contract.
- rule.py: how a rule is declared (id, area, needed sources, named thresholds) and the Context
  it reads (a Window over the snapshots, with helpers that turn counters into cited evidence).
- engine.py: runs every rule of the selected areas and collects findings and what was missing.
- rules/<area>.py: one small function per diagnosis.
"""
