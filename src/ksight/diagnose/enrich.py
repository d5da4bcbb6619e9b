"""Check-time enrichments: evidence a finding gets only when `ksight check` looks at the live
machine, after the rules ran. A short kernel profile for `cpu.high-system`, a trace of the
flows that retransmit for a TCP rule: things a rule cannot read from snapshots, that cost a
second or two of tracing, and that are only worth taking when the rule fired.

    @enrichment("kernel-profile", rules=("cpu.high-system",), what="kernel functions",
                source="perf record -a (1 s)")
    def kernel_profile(finding):          # live only; bounded; leaves nothing running
        return [Evidence(...), ...]        # or raise errors.Unavailable(what, why)

`enrich(report, live=...)` runs, for each finding, the enrichments registered for its rule id:
- live: the function's evidence is appended to the finding's; `Unavailable` (perf missing, not
  root) or any failure becomes one evidence line saying why the enrichment is absent;
- Ctrl-C while one runs ends it (the enrichment cleans up after itself) and the report is still
  printed, each enrichment not taken saying so;
- from a capture (`--from`): nothing runs (the kernel it came from is not this one); the
  finding says so in one evidence line.
An enrichment runs at most once per report and rule. Its evidence is shared by that rule's
findings, unless it declares `split(result, finding) -> evidence`: then `run` returns a raw
result (one trace of every flow, say) and `split` picks each finding's part (the flows of that
finding's network namespace). Enrichments are registered by the rule modules (imported by
`load_rules`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
from .finding import Evidence, Finding, Report

FROM_CAPTURE = ("not taken from a capture: it needs the live kernel the capture came from; "
                "run `ksight check` on that machine while the problem is on")


@dataclass(frozen=True)
class Enrichment:
    name: str
    rules: tuple[str, ...]
    run: Callable[[Finding], Sequence[Evidence]]
    what: str  # the evidence's name when it is absent ("kernel functions")
    source: str  # where it would have come from ("perf record -a (1 s)")
    split: Callable[[object, Finding], Sequence[Evidence]] | None = None


ENRICHMENTS: dict[str, Enrichment] = {}


def enrichment(name: str, *, rules: tuple[str, ...], what: str, source: str,
               split: Callable[[object, Finding], Sequence[Evidence]] | None = None):
    def deco(func):
        if name in ENRICHMENTS:
            raise ValueError(f"enrichment {name} declared twice")
        ENRICHMENTS[name] = Enrichment(name, tuple(rules), func, what, source, split)
        return func

    return deco


def absent(e: Enrichment, reason: str) -> Evidence:
    return Evidence(e.what, "not taken", "", e.source, None, reason)


def enrich(report: Report, *, live: bool,
           progress: Callable[[str], None] | None = None) -> list[str]:
    """Append the enrichments' evidence to the report's findings; returns the names run."""
    done: dict[tuple[str, str], tuple[Evidence, ...]] = {}
    raw: dict[tuple[str, str], object] = {}  # results of enrichments that split them
    ran: list[str] = []
    stopped = False
    for i, f in enumerate(report.findings):
        extra: list[Evidence] = []
        for e in ENRICHMENTS.values():
            if f.id not in e.rules:
                continue
            key = (e.name, f.id)
            if key not in done:
                if not live:
                    done[key] = (absent(e, FROM_CAPTURE),)
                elif stopped:
                    done[key] = (absent(e, "not taken: interrupted (Ctrl-C)"),)
                else:
                    if progress:
                        progress(f"{f.id}: {e.what} ({e.source})...")
                    try:
                        if e.split is not None:
                            raw[key] = e.run(f)
                            done[key] = ()
                        else:
                            done[key] = tuple(e.run(f))
                        ran.append(e.name)
                    except Unavailable as u:
                        done[key] = (absent(e, u.reason),)
                    except KeyboardInterrupt:  # the findings are worth printing anyway
                        stopped = True
                        done[key] = (absent(e, "not taken: interrupted (Ctrl-C)"),)
                    except Exception as exc:  # an enrichment must never hide the finding
                        done[key] = (absent(e, f"failed: {type(exc).__name__}: {exc}"),)
            if key in raw:
                try:
                    extra.extend(e.split(raw[key], f))
                except Exception as exc:  # never hide the finding
                    extra.append(absent(e, f"failed: {type(exc).__name__}: {exc}"))
            else:
                extra.extend(done[key])
        if extra:
            report.findings[i] = replace(f, evidence=tuple(f.evidence) + tuple(extra))
    return ran


__all__ = ["Enrichment", "ENRICHMENTS", "enrichment", "enrich", "absent", "FROM_CAPTURE"]
