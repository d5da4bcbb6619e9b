"""Build second (and third) /proc/stat readings from a real first one (the corpora) by adding
known ticks to chosen CPUs, so tests can compare ksight's percentages with hand computations."""

from __future__ import annotations

FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest",
          "guest_nice")


def cpu_lines(text: str) -> dict[str, list[int]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("cpu"):
            k, *v = line.split()
            out[k] = [int(x) for x in v]
    return out


def bump(text: str, deltas: dict[int, dict[str, int]], *, drop: tuple[int, ...] = (),
         set_: dict[int, dict[str, int]] | None = None, scalars: dict[str, int] | None = None) -> str:
    """Add `deltas[cpu][field]` ticks to cpuN lines (and the same to the `cpu` line), set fields
    outright with `set_`, leave out the CPUs in `drop` (offline), add to scalar lines
    ("ctxt": +n, "intr": +n on its first number, "processes", or set procs_running/blocked)."""
    set_ = set_ or {}
    scalars = scalars or {}
    out = []
    total_add = [0] * len(FIELDS)
    for line in text.splitlines():
        k, _, rest = line.partition(" ")
        if k.startswith("cpu") and k != "cpu":
            n = int(k[3:])
            if n in drop:
                continue
            vals = [int(x) for x in rest.split()]
            for f, d in deltas.get(n, {}).items():
                vals[FIELDS.index(f)] += d
                total_add[FIELDS.index(f)] += d
            for f, v in set_.get(n, {}).items():
                vals[FIELDS.index(f)] = v
            out.append(f"{k} " + " ".join(map(str, vals)))
        elif k in scalars and k in ("ctxt", "processes"):
            out.append(f"{k} {int(rest) + scalars[k]}")
        elif k in scalars and k in ("procs_running", "procs_blocked"):
            out.append(f"{k} {scalars[k]}")
        elif k == "intr" and "intr" in scalars:
            vals = rest.split()
            vals[0] = str(int(vals[0]) + scalars["intr"])
            out.append("intr " + " ".join(vals))
        else:
            out.append(line)
    res = []
    for line in out:
        if line.startswith("cpu "):
            vals = [int(x) for x in line.split()[1:]]
            vals = [v + total_add[i] for i, v in enumerate(vals)]
            line = "cpu  " + " ".join(map(str, vals))
        res.append(line)
    return "\n".join(res) + "\n"


def spread(ncpu: int, per_cpu: dict[str, int]) -> dict[int, dict[str, int]]:
    """The same ticks added to every CPU."""
    return {c: dict(per_cpu) for c in range(ncpu)}
