"""Recipes: a trace named by what the person wants to know, with its aggregation and overhead.

    r = get("reclaim")()
    with r.session(seconds=5) as t:
        workload()          # or t.wait()
    res = r.result(t)      # a plain dict (JSON-able)
    print(r.render(res))

A tracefs recipe aggregates in `on_event` (called from the reader thread every ~0.1 s, so the
process behind a PID is looked up while it still exists); memory stays bounded by the number of
distinct keys, not by the number of events.
"""

from __future__ import annotations

import bisect
import os
import socket
import struct
from collections import Counter, defaultdict

from ..errors import Unavailable
from ..fs import LiveRoot
from .session import trace

_root = LiveRoot()


# --- who is behind a PID -------------------------------------------------------------------
class Procs:
    """PID -> (comm, memory cgroup), looked up once per PID and cached."""

    def __init__(self):
        self.cache: dict[int, tuple[str, str | None]] = {}
        self._saved: dict[int, str] = {}
        self._saved_at = 0.0

    def _from_tracefs(self, pid: int) -> str:
        """The comm tracefs saved for a PID that already exited (re-read at most every 0.5 s)."""
        import time

        if pid not in self._saved and time.monotonic() - self._saved_at > 0.5:
            from .tracefs import saved_cmdlines

            self._saved = saved_cmdlines()
            self._saved_at = time.monotonic()
        return self._saved.get(pid, "?")

    def get(self, pid: int) -> tuple[str, str | None]:
        hit = self.cache.get(pid)
        if hit is not None:
            return hit
        if pid == 0:
            hit = ("[idle/irq]", None)
        else:
            try:
                comm = _root.read_text(f"proc/{pid}/comm").strip()
            except Unavailable:
                comm = self._from_tracefs(pid)
            hit = (comm, memcg_of(pid))
        if len(self.cache) < 100_000:
            self.cache[pid] = hit
        return hit


def memcg_of(pid: int) -> str | None:
    """The memory cgroup path of a PID (v1 'memory' line, else the v2 '0::' line)."""
    try:
        text = _root.read_text(f"proc/{pid}/cgroup")
    except Unavailable:
        return None
    v2 = None
    for line in text.splitlines():
        _, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        if "memory" in ctrls.split(","):
            return path
        if ctrls == "":
            v2 = path
    return v2


def log2_bucket(usec: float) -> int:
    """Upper bound of the power-of-two bucket holding usec (1, 2, 4, ... like bcc histograms)."""
    b = 1
    while b < usec:
        b <<= 1
    return b


def hist_text(h: dict[int, int], unit: str = "usec", width: int = 30) -> list[str]:
    if not h:
        return []
    top = max(h.values())
    out = [f"  {unit + ' <=':>12} : count"]
    for b in sorted(h):
        bar = "*" * max(1, int(width * h[b] / top))
        out.append(f"  {b:>12} : {h[b]:<6} |{bar}")
    return out


class Recipe:
    name = ""
    question = ""
    events: tuple[str, ...] = ()
    overhead = ""
    alternatives: dict[str, str] = {}
    buffer_kb = 2048

    def __init__(self, **opts):
        self.opts = opts
        self.procs = Procs()

    def filters(self) -> dict[str, str]:
        return {}

    def headline(self, seconds) -> str:
        dur = f"for {seconds:g} s" if seconds else "until Ctrl-C"
        return f"Tracing {self.question} {dur}... Hit Ctrl-C to end."

    def session(self, seconds: float | None = 10, *, max_events: int = 2_000_000, **kw):
        return trace(self.events, filter=self.filters(), seconds=seconds, max_events=max_events,
                     buffer_kb=kw.pop("buffer_kb", self.buffer_kb), on_event=self.on_event,
                     alternatives=self.alternatives, **kw)

    def on_event(self, e) -> None:
        raise NotImplementedError

    def summary(self) -> dict:
        raise NotImplementedError

    def result(self, t) -> dict:
        return {"recipe": self.name, "question": self.question, "backend": "tracefs",
                "seconds": round(t.duration_s, 3), "events": t.count, "lost": t.lost,
                "truncated": t.truncated, "enabled": list(t.enabled), "filters": dict(t.filters),
                "missing": [m.__dict__ for m in t.missing], "overhead": self.overhead,
                "errors": list(t.errors), **self.summary()}

    def render_body(self, res: dict) -> list[str]:
        return []

    def render(self, res: dict) -> str:
        lines = self.render_body(res)
        if not lines:
            lines = ["  (no events)"]
        tail = [f"{res['events']} events in {res['seconds']:.1f} s"
                + (f", {res['lost']} LOST (ring buffer full: raise --buffer-kb)" if res.get("lost") else ", none lost")
                + (" - stopped at --max-events" if res.get("truncated") else "")]
        for m in res.get("missing", []):
            alt = f"; used {m['alternative']} instead" if m.get("alternative") else ""
            tail.append(f"missing: {m['event']}: {m['reason']}{alt}")
        for n in res.get("notes", []):
            tail.append(f"note: {n}")
        for e in res.get("errors", []):
            tail.append(f"error: {e}")
        return "\n".join(lines + [""] + tail)


# --- retrans ---------------------------------------------------------------------------------
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}


def _addr(e, v4: str, v6: str) -> str:
    if e.get("family") == socket.AF_INET6:
        raw = e.get(v6)
        if raw and raw[:12] != b"\0" * 10 + b"\xff\xff":
            return socket.inet_ntop(socket.AF_INET6, raw)
        return socket.inet_ntop(socket.AF_INET, raw[12:]) if raw else "?"
    raw = e.get(v4)
    return socket.inet_ntop(socket.AF_INET, raw) if raw else "?"


def _hex_v4(addr: str, port: int) -> str:
    """'198.18.0.1', 80 -> '010012C6:0050' (the /proc/net/tcp spelling, little-endian host)."""
    n = struct.unpack("<I", socket.inet_aton(addr))[0]
    return f"{n:08X}:{port:04X}"


def socket_owner(saddr: str, sport: int, daddr: str, dport: int) -> dict | None:
    """Find the process holding the TCP socket saddr:sport -> daddr:dport, in any netns.

    Reads /proc/PID/net/tcp once per network namespace, then scans fds for socket:[inode].
    """
    if ":" in saddr:
        return None  # IPv6 lookup not done (tcp6 spelling); the flow is still reported
    want = (_hex_v4(saddr, sport), _hex_v4(daddr, dport))
    seen_ns: dict[str, list[int]] = defaultdict(list)
    try:
        pids = [int(p) for p in _root.listdir("proc") if p.isdigit()]
    except Unavailable:
        return None
    for pid in pids:
        try:
            seen_ns[_root.readlink(f"proc/{pid}/ns/net")].append(pid)
        except Unavailable:
            continue
    for ns, members in seen_ns.items():
        inode = None
        for pid in members[:3]:
            try:
                text = _root.read_text(f"proc/{pid}/net/tcp")
            except Unavailable:
                continue
            for line in text.splitlines()[1:]:
                t = line.split()
                if len(t) > 9 and t[1] == want[0] and t[2] == want[1]:
                    inode = t[9]
                    break
            break
        if not inode or inode == "0":
            continue
        target = f"socket:[{inode}]"
        for pid in members:
            try:
                fds = _root.listdir(f"proc/{pid}/fd")
            except Unavailable:
                continue
            for fd in fds:
                try:
                    if _root.readlink(f"proc/{pid}/fd/{fd}") == target:
                        comm = _root.read_text(f"proc/{pid}/comm").strip()
                        return {"pid": pid, "comm": comm, "inode": int(inode), "netns": ns}
                except Unavailable:
                    continue
    return None


class Retrans(Recipe):
    name = "retrans"
    question = "TCP retransmits"
    events = ("tcp:tcp_retransmit_skb", "tcp:tcp_retransmit_synack", "sock:inet_sock_set_state")
    overhead = ("low: one event per retransmitted segment (rare on a healthy network), plus "
                "TCP state changes made by processes (connect, listen, close: kernel-side filter) "
                "to learn socket owners; a /proc scan once per new flow otherwise (max 64 flows)")
    # state changes that happen in the owner's own context: connect(), close(), listen()
    OWNER_STATES = (2, 4, 9, 10)

    def __init__(self, **opts):
        super().__init__(**opts)
        self.flows: Counter = Counter()
        self.state: dict = {}
        self.owner: dict = {}
        self.sk: dict = {}           # flow -> skaddr
        self.sk_owner: dict = {}     # skaddr -> (pid, comm), from inet_sock_set_state

    def filters(self):
        states = " || ".join(f"newstate == {s}" for s in self.OWNER_STATES)
        return {"sock:inet_sock_set_state": f"protocol == 6 && ({states})"}

    def on_event(self, e) -> None:
        if e.name == "sock:inet_sock_set_state":
            if e.pid > 0 and len(self.sk_owner) < 100_000:
                self.sk_owner[e["skaddr"]] = (e.pid, self.procs.get(e.pid)[0])
            return
        kind = "synack" if e.name.endswith("synack") else "skb"
        key = (_addr(e, "saddr", "saddr_v6"), e["sport"], _addr(e, "daddr", "daddr_v6"), e["dport"], kind)
        self.flows[key] += 1
        self.sk[key] = e.get("skaddr")
        if "state" in e.fields:
            self.state[key] = TCP_STATES.get(e["state"], str(e["state"]))
        elif kind == "synack":
            self.state[key] = "SYN_RECV"
        if key not in self.owner and len(self.owner) < 64:
            self.owner[key] = socket_owner(*key[:4])

    def summary(self) -> dict:
        flows = []
        for key, n in self.flows.most_common():
            owner = self.owner.get(key)
            if owner is None and self.sk.get(key) in self.sk_owner:
                pid, comm = self.sk_owner[self.sk[key]]
                owner = {"pid": pid, "comm": comm, "found_by": "inet_sock_set_state"}
            elif owner is not None:
                owner = {**owner, "found_by": "/proc fd scan"}
            flows.append({"saddr": key[0], "sport": key[1], "daddr": key[2], "dport": key[3],
                          "kind": key[4], "retransmits": n, "state": self.state.get(key),
                          "owner": owner})
        return {"flows": flows}

    def render_body(self, res):
        out = [f"{'LOCAL':<22} {'REMOTE':<22} {'STATE':<12} {'RETRANS':>7}  OWNER"]
        for f in res["flows"]:
            own = f"{f['owner']['comm']}[{f['owner']['pid']}]" if f["owner"] else "-"
            out.append(f"{f['saddr'] + ':' + str(f['sport']):<22} {f['daddr'] + ':' + str(f['dport']):<22} "
                       f"{(f['state'] or '?'):<12} {f['retransmits']:>7}  {own}")
        return out if res["flows"] else []


# --- the bpftrace backend of a recipe ---------------------------------------------------------
class _BpftraceBackend:
    """Lets a recipe run as one bpftrace program instead of a tracefs session.

    `backend="tracefs"` (the default) leaves the recipe's tracefs path exactly as it is. With
    `backend="bpftrace"`, `session()` returns a `bpftrace.Run` (same `with ... as t: t.wait()`
    shape) and `result()` builds the same top-level keys from the maps bpftrace aggregated in
    the kernel, plus `histogram` (bpftrace's own buckets: min, max, count) and `program`.
    """
    backend = "tracefs"
    bpftrace_overhead = ""

    def session(self, seconds=10, **kw):
        if self.backend != "bpftrace":
            return super().session(seconds, **kw)
        from .bpftrace import Run

        return Run(self.bpftrace_program(), seconds, on_printf=self.bpftrace_printf)

    def bpftrace_program(self) -> str:
        raise NotImplementedError

    def bpftrace_printf(self, msg: str) -> None:
        pass

    def bpftrace_summary(self, out) -> dict:
        raise NotImplementedError

    def result(self, t) -> dict:
        if self.backend != "bpftrace":
            return super().result(t)
        out = t.output
        ev = out.maps.get("@events", 0)
        return {"recipe": self.name, "question": self.question, "backend": "bpftrace",
                "seconds": round(t.duration_s, 3), "events": ev if isinstance(ev, int) else 0,
                "lost": t.lost, "truncated": False, "enabled": list(self.events), "filters": {},
                "missing": [], "overhead": self.bpftrace_overhead, "errors": list(t.errors),
                **self.bpftrace_summary(out), "program": t.program}

    def render(self, res: dict) -> str:
        text = super().render(res)
        if res.get("backend") != "bpftrace":
            return text
        extra = []
        if self.name != "reclaim":  # reclaim's body already draws its histograms
            for kind, h in res.get("histogram_usec", {}).items():
                extra.append(f"{kind} time:")
                extra += hist_text(h)
        return "\n".join(extra + ([""] if extra else []) + [text])


# --- reclaim ---------------------------------------------------------------------------------
class Reclaim(_BpftraceBackend, Recipe):
    name = "reclaim"
    question = "direct and memory-cgroup reclaim"
    events = ("vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end",
              "vmscan:mm_vmscan_memcg_reclaim_begin", "vmscan:mm_vmscan_memcg_reclaim_end",
              "vmscan:mm_vmscan_wakeup_kswapd")
    overhead = ("low: events fire only when an allocation stalls in reclaim; the stall itself "
                "costs far more than the event")
    bpftrace_overhead = ("low: a few map updates in the kernel per reclaim stall (the stall "
                         "costs far more); only the final histograms leave the kernel, plus one "
                         "line per new thread seen stalling (to name its memory cgroup)")

    def __init__(self, backend: str = "tracefs", **opts):
        super().__init__(**opts)
        self.backend = backend
        self.begin: dict = {}
        self.hist: dict = defaultdict(Counter)        # kind -> bucket -> n
        self.by_proc: dict = {}
        self.by_cg: dict = {}
        self.kswapd: Counter = Counter()

    @staticmethod
    def _acc(d, key):
        return d.setdefault(key, {"stalls": 0, "total_usec": 0.0, "max_usec": 0.0,
                                  "reclaimed_pages": 0, "hist": Counter()})

    def on_event(self, e) -> None:
        n = e.name.rsplit(":", 1)[1]
        if n == "mm_vmscan_wakeup_kswapd":
            self.kswapd[e.pid] += 1
            self.procs.get(e.pid)
            return
        kind = "memcg" if "memcg" in n else "direct"
        if n.endswith("_begin"):
            self.begin[(e.pid, kind)] = e.ts
            self.procs.get(e.pid)
            return
        t0 = self.begin.pop((e.pid, kind), None)
        if t0 is None:
            return  # began before the trace
        usec = (e.ts - t0) / 1000.0
        comm, cg = self.procs.get(e.pid)
        b = log2_bucket(usec)
        self.hist[kind][b] += 1
        for acc in (self._acc(self.by_proc, (e.pid, comm, kind)), self._acc(self.by_cg, (cg, kind))):
            acc["stalls"] += 1
            acc["total_usec"] += usec
            acc["max_usec"] = max(acc["max_usec"], usec)
            acc["reclaimed_pages"] += e.get("nr_reclaimed", 0)
            acc["hist"][b] += 1

    def summary(self) -> dict:
        procs = [{"pid": k[0], "comm": k[1], "kind": k[2], "cgroup": self.procs.get(k[0])[1],
                  **{**v, "hist": dict(v["hist"])}} for k, v in self.by_proc.items()]
        procs.sort(key=lambda r: -r["total_usec"])
        cgs = [{"cgroup": k[0], "kind": k[1], **{**v, "hist": dict(v["hist"])}}
               for k, v in self.by_cg.items()]
        cgs.sort(key=lambda r: -r["total_usec"])
        ksw = [{"pid": p, "comm": self.procs.get(p)[0], "wakeups": n} for p, n in self.kswapd.most_common(20)]
        return {"histogram_usec": {k: dict(v) for k, v in self.hist.items()}, "processes": procs,
                "cgroups": cgs, "kswapd_wakeups": ksw,
                "in_progress_at_end": len(self.begin)}

    # -- bpftrace backend: latency histograms aggregated in the kernel --------------------
    def bpftrace_program(self) -> str:
        probes = []
        for i, kind in enumerate(("direct", "memcg")):
            probes.append(f"""
tracepoint:vmscan:mm_vmscan_{kind}_reclaim_begin {{
  @start[tid, {i}] = nsecs; @events = count();
  if (@seen[tid] == 0) {{ @seen[tid] = 1; printf("tid %d\\n", tid); }}
}}
tracepoint:vmscan:mm_vmscan_{kind}_reclaim_end /@start[tid, {i}]/ {{
  $ns = nsecs - @start[tid, {i}]; delete(@start[tid, {i}]); @events = count();
  @hist["{kind}"] = hist($ns / 1000);
  @phist[tid, "{kind}", comm] = hist($ns / 1000);
  @stalls[tid, "{kind}", comm] = count();
  @ns[tid, "{kind}", comm] = sum($ns);
  @maxns[tid, "{kind}", comm] = max($ns);
  @pages[tid, "{kind}", comm] = sum(args->nr_reclaimed);
}}""")
        probes.append("""
tracepoint:vmscan:mm_vmscan_wakeup_kswapd { @events = count(); @kswapd[tid, comm] = count(); }
END { clear(@seen); }
""")
        return "".join(probes)

    def bpftrace_printf(self, msg: str) -> None:
        # a thread stalls in reclaim for the first time: name it and its memory cgroup now,
        # while it exists (it may be gone when bpftrace prints its maps)
        t = msg.split()
        if len(t) == 2 and t[0] == "tid" and t[1].isdigit():
            self.procs.get(int(t[1]))

    def bpftrace_summary(self, out) -> dict:
        from .bpftrace import jsonable_hist, log2_upper, merge_hist, split_key

        m = out.maps
        hist = m.get("@hist") or {}
        procs: dict = {}
        for key, n in (m.get("@stalls") or {}).items():
            tid, kind, comm = split_key(key, 3)
            pid = int(tid)
            b = (m.get("@phist") or {}).get(key, [])
            procs[key] = {"pid": pid, "comm": comm, "kind": kind, "cgroup": self.procs.get(pid)[1],
                          "stalls": n, "total_usec": (m.get("@ns") or {}).get(key, 0) / 1000.0,
                          "max_usec": (m.get("@maxns") or {}).get(key, 0) / 1000.0,
                          "reclaimed_pages": (m.get("@pages") or {}).get(key, 0),
                          "hist": log2_upper(b), "_b": b}
        cgs: dict = {}
        for p in procs.values():
            c = cgs.setdefault((p["cgroup"], p["kind"]), {
                "cgroup": p["cgroup"], "kind": p["kind"], "stalls": 0, "total_usec": 0.0,
                "max_usec": 0.0, "reclaimed_pages": 0, "_b": []})
            c["stalls"] += p["stalls"]
            c["total_usec"] += p["total_usec"]
            c["max_usec"] = max(c["max_usec"], p["max_usec"])
            c["reclaimed_pages"] += p["reclaimed_pages"]
            c["_b"] = merge_hist(c["_b"], p["_b"])
        for c in cgs.values():
            c["hist"] = log2_upper(c.pop("_b"))
        for p in procs.values():
            p.pop("_b")
        ksw = []
        for key, n in sorted((m.get("@kswapd") or {}).items(), key=lambda kv: -kv[1])[:20]:
            tid, comm = split_key(key, 2)
            ksw.append({"pid": int(tid), "comm": comm, "wakeups": n})
        return {"histogram_usec": {k: log2_upper(v) for k, v in hist.items()},
                "processes": sorted(procs.values(), key=lambda r: -r["total_usec"]),
                "cgroups": sorted(cgs.values(), key=lambda r: -r["total_usec"]),
                "kswapd_wakeups": ksw, "in_progress_at_end": len(m.get("@start") or {}),
                "histogram": {k: jsonable_hist(v) for k, v in hist.items()},
                "histogram_unit": "usec"}

    def render_body(self, res):
        out = []
        for kind, h in res["histogram_usec"].items():
            out.append(f"{kind} reclaim latency:")
            out += hist_text(h)
        if res["processes"]:
            out.append(f"{'PID':>7} {'COMM':<16} {'KIND':<6} {'STALLS':>6} {'TOTAL ms':>9} {'MAX ms':>8} {'PAGES':>8}  CGROUP")
            for p in res["processes"][:20]:
                out.append(f"{p['pid']:>7} {p['comm'][:16]:<16} {p['kind']:<6} {p['stalls']:>6} "
                           f"{p['total_usec'] / 1000:>9.2f} {p['max_usec'] / 1000:>8.2f} "
                           f"{p['reclaimed_pages']:>8}  {p['cgroup'] or '-'}")
        if res["cgroups"]:
            out.append(f"{'CGROUP':<40} {'KIND':<6} {'STALLS':>6} {'TOTAL ms':>9} {'PAGES':>8}")
            for c in res["cgroups"][:20]:
                out.append(f"{str(c['cgroup'])[:40]:<40} {c['kind']:<6} {c['stalls']:>6} "
                           f"{c['total_usec'] / 1000:>9.2f} {c['reclaimed_pages']:>8}")
        if res["kswapd_wakeups"]:
            out.append("kswapd woken by: " + ", ".join(f"{k['comm']}[{k['pid']}] x{k['wakeups']}"
                                                       for k in res["kswapd_wakeups"][:8]))
        return out


# --- compaction ------------------------------------------------------------------------------
class Compaction(Recipe):
    name = "compaction"
    question = "memory compaction stalls"
    events = ("compaction:mm_compaction_try_to_compact_pages", "compaction:mm_compaction_begin",
              "compaction:mm_compaction_end", "compaction:mm_compaction_stall")
    alternatives = {"compaction:mm_compaction_stall": "compaction:mm_compaction_try_to_compact_pages"}
    overhead = "low: events fire per compaction run, which is itself expensive and rare"

    def __init__(self, **opts):
        super().__init__(**opts)
        self.begin: dict = {}
        self.by_proc: dict = {}
        self.status: Counter = Counter()

    def on_event(self, e):
        n = e.name.rsplit(":", 1)[1]
        comm = self.procs.get(e.pid)[0]
        acc = self.by_proc.setdefault((e.pid, comm), {"direct_stalls": 0, "runs": 0,
                                                       "total_usec": 0.0, "max_usec": 0.0})
        if n in ("mm_compaction_try_to_compact_pages", "mm_compaction_stall"):
            acc["direct_stalls"] += 1
        elif n == "mm_compaction_begin":
            self.begin[e.pid] = e.ts
        elif n == "mm_compaction_end":
            self.status[e.get("status")] += 1
            t0 = self.begin.pop(e.pid, None)
            if t0 is not None:
                usec = (e.ts - t0) / 1000
                acc["runs"] += 1
                acc["total_usec"] += usec
                acc["max_usec"] = max(acc["max_usec"], usec)

    def summary(self):
        names = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page",
                 4: "continue", 5: "complete", 6: "partial_skipped", 7: "contended", 8: "success"}
        procs = [{"pid": k[0], "comm": k[1], "kcompactd": k[1].startswith("kcompactd"), **v}
                 for k, v in self.by_proc.items()]
        procs.sort(key=lambda r: (-r["total_usec"], -r["direct_stalls"]))
        return {"processes": procs, "end_status": {names.get(k, str(k)): v for k, v in self.status.items()}}

    def render_body(self, res):
        if not res["processes"]:
            return []
        out = [f"{'PID':>7} {'COMM':<16} {'STALLS':>6} {'RUNS':>5} {'TOTAL ms':>9} {'MAX ms':>8}"]
        for p in res["processes"][:20]:
            out.append(f"{p['pid']:>7} {p['comm'][:16]:<16} {p['direct_stalls']:>6} {p['runs']:>5} "
                       f"{p['total_usec'] / 1000:>9.2f} {p['max_usec'] / 1000:>8.2f}")
        out.append("end status: " + ", ".join(f"{k} {v}" for k, v in res["end_status"].items()))
        return out


# --- writeback -------------------------------------------------------------------------------
class Writeback(Recipe):
    name = "writeback"
    question = "dirty-page throttling (balance_dirty_pages)"
    events = ("writeback:balance_dirty_pages",)
    overhead = "low: one event per throttling decision of a writer that dirties pages fast"

    def __init__(self, **opts):
        super().__init__(**opts)
        self.by_proc: dict = {}

    def on_event(self, e):
        comm = self.procs.get(e.pid)[0]
        acc = self.by_proc.setdefault((e.pid, comm), {"events": 0, "paused": 0, "pause_ms": 0,
                                                       "max_pause_ms": 0, "bdi": set()})
        acc["events"] += 1
        p = e.get("pause", 0)  # ms (the kernel converts jiffies to ms in the tracepoint)
        if p > 0:
            acc["paused"] += 1
            acc["pause_ms"] += p
            acc["max_pause_ms"] = max(acc["max_pause_ms"], p)
        acc["bdi"].add(e.get("bdi", "?"))

    def summary(self):
        procs = [{"pid": k[0], "comm": k[1], **{**v, "bdi": sorted(v["bdi"])}} for k, v in self.by_proc.items()]
        procs.sort(key=lambda r: (-r["pause_ms"], -r["events"]))
        return {"processes": procs}

    def render_body(self, res):
        if not res["processes"]:
            return []
        out = [f"{'PID':>7} {'COMM':<16} {'EVENTS':>7} {'PAUSES':>7} {'PAUSE ms':>9} {'MAX ms':>7}  BDI"]
        for p in res["processes"][:20]:
            out.append(f"{p['pid']:>7} {p['comm'][:16]:<16} {p['events']:>7} {p['paused']:>7} "
                       f"{p['pause_ms']:>9} {p['max_pause_ms']:>7}  {','.join(p['bdi'])}")
        return out


# --- buflimit --------------------------------------------------------------------------------
class Buflimit(Recipe):
    name = "buflimit"
    question = "sockets hitting their memory limit"
    events = ("sock:sock_exceed_buf_limit",)
    overhead = "low: fires only when a socket is refused memory"

    def __init__(self, **opts):
        super().__init__(**opts)
        self.c: Counter = Counter()
        self.last: dict = {}

    def on_event(self, e):
        kind = {0: "send", 1: "receive"}.get(e.get("kind"), str(e.get("kind")))
        comm = self.procs.get(e.pid)[0]
        key = (e.get("name", "?"), kind, e.pid, comm)
        self.c[key] += 1
        self.last[key] = {k: e.get(k) for k in ("sysctl_mem", "allocated", "sysctl_rmem", "rmem_alloc",
                                                   "sysctl_wmem", "wmem_alloc", "wmem_queued")}

    def summary(self):
        return {"sockets": [{"proto": k[0], "side": k[1], "pid": k[2], "comm": k[3], "count": n,
                             "last": self.last[k]} for k, n in self.c.most_common()]}

    def render_body(self, res):
        if not res["sockets"]:
            return []
        out = [f"{'PROTO':<8} {'SIDE':<8} {'PID':>7} {'COMM':<16} {'COUNT':>7}  ALLOCATED/LIMIT(pages)"]
        for s in res["sockets"][:20]:
            lim = s["last"].get("sysctl_mem")
            out.append(f"{s['proto']:<8} {s['side']:<8} {s['pid']:>7} {s['comm'][:16]:<16} {s['count']:>7}  "
                       f"{s['last'].get('allocated')}/{lim[2] if lim else '?'}")
        if any(s["side"] == "receive" for s in res["sockets"]):
            out.append("")
            out.append("receive side: the kernel refuses memory while processing incoming packets, in "
                       "softirq context, so PID/COMM is whatever ran on that CPU, not the socket's "
                       "owner (the tracepoint carries no socket address). `ksight show --sockets` "
                       "lists each socket's receive queue and owner.")
        return out


# --- mmap ------------------------------------------------------------------------------------
class Mmap(Recipe):
    name = "mmap"
    question = "mmap/munmap/brk calls"
    events = ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap", "syscalls:sys_enter_brk")
    overhead = ("low with --size: the kernel-side filter drops other sizes before they reach the "
                "buffer (the syscall tracepoint itself still costs ~0.1 us per mmap/munmap/brk)")

    def __init__(self, size: int | None = None, pid: int | None = None, **opts):
        super().__init__(**opts)
        self.size, self.pid = size, pid
        self.c: Counter = Counter()
        if size and not pid:
            # brk takes an address, not a length: with --size alone it would list every
            # process that grows its heap, so it is left out
            self.events = ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap")

    def headline(self, seconds):
        what = f"mmap/munmap of {self.size} bytes" if self.size else "mmap/munmap/brk calls"
        who = f" by PID {self.pid}" if self.pid else ""
        dur = f"for {seconds:g} s" if seconds else "until Ctrl-C"
        return f"Tracing {what}{who} {dur}... Hit Ctrl-C to end."

    def filters(self):
        pidf = f"common_pid == {int(self.pid)}" if self.pid else None
        out = {}
        for ev in ("syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap"):
            parts = [p for p in (f"len == {int(self.size)}" if self.size else None, pidf) if p]
            if parts:
                out[ev] = " && ".join(parts)
        if pidf:
            out["syscalls:sys_enter_brk"] = pidf
        return out

    def on_event(self, e):
        call = e.name.rsplit("sys_enter_", 1)[-1]
        comm = self.procs.get(e.pid)[0]
        self.c[(e.pid, comm, call)] += 1

    def summary(self):
        per: dict = {}
        for (pid, comm, call), n in self.c.items():
            per.setdefault((pid, comm), Counter())[call] += n
        procs = [{"pid": k[0], "comm": k[1], "mmap": v.get("mmap", 0), "munmap": v.get("munmap", 0),
                  "brk": v.get("brk", 0)} for k, v in per.items()]
        procs.sort(key=lambda r: -(r["mmap"] + r["munmap"] + r["brk"]))
        notes = []
        if self.size and not self.pid:
            notes.append("brk not traced with --size (it takes an address, not a length); add -p PID for it")
        elif self.size:
            notes.append("brk is not filtered by size (it takes an address, not a length)")
        if self.pid:
            notes.append("-p filters on the thread ID the kernel records (common_pid): other "
                         "threads of a multi-threaded process are not seen; use --stacks -p for those")
        return {"size": self.size, "pid": self.pid, "processes": procs, "notes": notes}

    def render_body(self, res):
        if not res["processes"]:
            return []
        out = [f"{'PID':>7} {'COMM':<16} {'MMAP':>7} {'MUNMAP':>7} {'BRK':>7}"]
        for p in res["processes"][:30]:
            out.append(f"{p['pid']:>7} {p['comm'][:16]:<16} {p['mmap']:>7} {p['munmap']:>7} {p['brk']:>7}")
        for s in res.get("stacks", [])[:5]:
            out.append(f"  {s['count']:>5} x {s['stack']}")
        return out


# --- oom -------------------------------------------------------------------------------------
class Oom(Recipe):
    name = "oom"
    question = "OOM kills"
    events = ("oom:mark_victim",)
    overhead = "none to speak of: fires once per OOM kill"

    def __init__(self, **opts):
        super().__init__(**opts)
        self.victims: list = []
        self._kmsg = None

    def session(self, seconds=10, **kw):
        # The constraint (memcg, cpuset, global) is not in the tracepoint; the kernel log line
        # "oom-kill:constraint=...,task_memcg=...,pid=N" carries it. Read new records only.
        try:
            self._kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self._kmsg, 0, os.SEEK_END)
        except OSError:
            self._kmsg = None
        return super().session(seconds, **kw)

    def on_event(self, e):
        comm, cg = self.procs.get(e["pid"]) if e["pid"] else ("?", None)
        self.victims.append({"pid": e["pid"], "comm": e.get("comm") or comm,
                             "total_vm_kb": e.get("total_vm"), "anon_rss_kb": e.get("anon_rss"),
                             "file_rss_kb": e.get("file_rss"), "shmem_rss_kb": e.get("shmem_rss"),
                             "uid": e.get("uid"), "oom_score_adj": e.get("oom_score_adj"),
                             "cgroup": cg, "constraint": None, "oom_memcg": None,
                             "killer_pid": e.pid})

    def _read_kmsg(self) -> dict[int, dict]:
        found = {}
        if self._kmsg is None:
            return found
        try:
            while True:
                try:
                    rec = os.read(self._kmsg, 8192).decode("utf-8", "replace")
                except BlockingIOError:
                    break
                except OSError:  # EPIPE: records overwritten; keep going
                    continue
                if not rec:
                    break
                msg = rec.split(";", 1)[-1].split("\n", 1)[0]
                if msg.startswith("oom-kill:"):
                    kv = dict(p.split("=", 1) for p in msg[len("oom-kill:"):].split(",") if "=" in p)
                    if kv.get("pid", "").isdigit():
                        found[int(kv["pid"])] = kv
        finally:
            os.close(self._kmsg)
            self._kmsg = None
        return found

    def summary(self):
        log = self._read_kmsg()
        notes = []
        for v in self.victims:
            kv = log.get(v["pid"])
            if kv:
                v["constraint"] = kv.get("constraint")
                v["oom_memcg"] = kv.get("oom_memcg")
                v["cgroup"] = v["cgroup"] or kv.get("task_memcg")
        if self.victims and not log:
            notes.append("constraint unknown: no oom-kill line in the kernel log (/dev/kmsg)")
        return {"victims": self.victims, "notes": notes}

    def render_body(self, res):
        if not res["victims"]:
            return []
        out = [f"{'PID':>7} {'COMM':<16} {'ANON RSS MB':>11} {'ADJ':>5} {'CONSTRAINT':<18} CGROUP"]
        for v in res["victims"]:
            out.append(f"{v['pid']:>7} {str(v['comm'])[:16]:<16} {(v['anon_rss_kb'] or 0) / 1024:>11.1f} "
                       f"{v['oom_score_adj']:>5} {str(v['constraint'] or '?'):<18} {v['cgroup'] or '-'}")
        return out


# --- kmalloc ---------------------------------------------------------------------------------
class Kallsyms:
    def __init__(self):
        self.addrs: list[int] = []
        self.names: list[str] = []
        try:
            text = _root.read_text("proc/kallsyms")
        except Unavailable:
            return
        pairs = []
        for line in text.splitlines():
            t = line.split()
            if len(t) >= 3 and t[1] in "tTwW":
                a = int(t[0], 16)
                if a:
                    pairs.append((a, t[2]))
        pairs.sort()
        self.addrs = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def name(self, addr: int) -> str:
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0 or not self.addrs:
            return hex(addr)
        return f"{self.names[i]}+{addr - self.addrs[i]:#x}"


class Kmalloc(Recipe):
    name = "kmalloc"
    question = "kernel allocations not freed (kmalloc minus kfree, by call site)"
    events = ("kmem:kmalloc", "kmem:kfree")
    buffer_kb = 8192
    overhead = ("HIGH: kmalloc/kfree fire hundreds of thousands of times per second on a busy "
                "machine; expect several % of CPU and lost events under load. Keep it short.")
    MAX_LIVE = 2_000_000

    def __init__(self, **opts):
        super().__init__(**opts)
        self.live: dict[int, tuple[int, int]] = {}
        self.allocs: Counter = Counter()
        self.frees = 0
        self.dropped = 0

    def on_event(self, e):
        f = e.fields
        if e.name == "kmem:kmalloc":
            if len(self.live) < self.MAX_LIVE:
                self.live[f["ptr"]] = (f["call_site"], f["bytes_alloc"])
            else:
                self.dropped += 1
            self.allocs[f["call_site"]] += 1
        else:
            if self.live.pop(f["ptr"], None) is not None:
                self.frees += 1

    def summary(self):
        out_b: Counter = Counter()
        out_n: Counter = Counter()
        for site, size in self.live.values():
            out_b[site] += size
            out_n[site] += 1
        syms = Kallsyms()
        sites = [{"call_site": syms.name(s), "addr": hex(s), "outstanding_bytes": b,
                  "outstanding": out_n[s], "allocs": self.allocs[s]} for s, b in out_b.most_common(30)]
        notes = ["outstanding = allocated during the window and not freed by its end "
                 "(short windows overstate long-lived but legitimate objects)"]
        if self.dropped:
            notes.append(f"{self.dropped} allocations not tracked (table full)")
        return {"call_sites": sites, "outstanding_bytes": sum(out_b.values()),
                "allocs": sum(self.allocs.values()), "frees_matched": self.frees, "notes": notes}

    def render_body(self, res):
        if not res["call_sites"]:
            return []
        out = [f"{'OUTSTANDING':>12} {'OBJECTS':>8} {'ALLOCS':>8}  CALL SITE"]
        for s in res["call_sites"][:20]:
            out.append(f"{s['outstanding_bytes']:>12} {s['outstanding']:>8} {s['allocs']:>8}  {s['call_site']}")
        return out


# --- softirq ---------------------------------------------------------------------------------
SOFTIRQ = ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"]


class Softirq(_BpftraceBackend, Recipe):
    name = "softirq"
    question = "softirq time per kind and CPU"
    events = ("irq:softirq_entry", "irq:softirq_exit")
    overhead = ("moderate: two events per softirq (thousands per second per CPU under network "
                "load); roughly 0.1-0.3 us each")
    bpftrace_overhead = ("low to moderate: two BPF programs per softirq (a hash-map update each, "
                         "well under 1 us); nothing per event leaves the kernel")

    def __init__(self, backend: str = "tracefs", **opts):
        super().__init__(**opts)
        self.backend = backend
        self.begin: dict = {}
        self.t: dict = defaultdict(lambda: [0, 0.0, 0.0])  # (vec, cpu) -> [count, total_us, max_us]

    def on_event(self, e):
        vec = e.fields["vec"]
        if e.name == "irq:softirq_entry":
            self.begin[(e.cpu, vec)] = e.ts
            return
        t0 = self.begin.pop((e.cpu, vec), None)
        if t0 is None:
            return
        us = (e.ts - t0) / 1000
        a = self.t[(vec, e.cpu)]
        a[0] += 1
        a[1] += us
        if us > a[2]:
            a[2] = us

    def summary(self):
        rows = [{"kind": SOFTIRQ[v] if v < len(SOFTIRQ) else str(v), "cpu": c, "count": a[0],
                 "total_usec": round(a[1], 3), "max_usec": round(a[2], 3)}
                for (v, c), a in self.t.items()]
        rows.sort(key=lambda r: -r["total_usec"])
        return {"softirqs": rows}

    # -- bpftrace backend: per-kind time histogram aggregated in the kernel ----------------
    def bpftrace_program(self) -> str:
        # softirqs do not nest on a CPU: the start time is kept per CPU
        return """
tracepoint:irq:softirq_entry { @start[cpu] = nsecs; @events = count(); }
tracepoint:irq:softirq_exit /@start[cpu]/ {
  $ns = nsecs - @start[cpu]; delete(@start[cpu]); @events = count();
  @hist[args->vec] = hist($ns / 1000);
  @n[args->vec, cpu] = count();
  @ns[args->vec, cpu] = sum($ns);
  @maxns[args->vec, cpu] = max($ns);
}
END { clear(@start); }
"""

    def bpftrace_summary(self, out) -> dict:
        from .bpftrace import jsonable_hist, log2_upper, split_key

        m = out.maps

        def kind(v: str) -> str:
            i = int(v)
            return SOFTIRQ[i] if 0 <= i < len(SOFTIRQ) else str(i)

        rows = []
        for key, n in (m.get("@n") or {}).items():
            vec, cpu = split_key(key, 2)
            rows.append({"kind": kind(vec), "cpu": int(cpu), "count": n,
                         "total_usec": round((m.get("@ns") or {}).get(key, 0) / 1000, 3),
                         "max_usec": round((m.get("@maxns") or {}).get(key, 0) / 1000, 3)})
        rows.sort(key=lambda r: -r["total_usec"])
        hist = {kind(k): v for k, v in (m.get("@hist") or {}).items()}
        return {"softirqs": rows, "histogram_usec": {k: log2_upper(v) for k, v in hist.items()},
                "histogram": {k: jsonable_hist(v) for k, v in hist.items()},
                "histogram_unit": "usec"}

    def render_body(self, res):
        if not res["softirqs"]:
            return []
        out = [f"{'KIND':<9} {'CPU':>3} {'COUNT':>8} {'TOTAL ms':>9} {'AVG us':>7} {'MAX us':>8}"]
        for r in res["softirqs"]:
            out.append(f"{r['kind']:<9} {r['cpu']:>3} {r['count']:>8} {r['total_usec'] / 1000:>9.3f} "
                       f"{r['total_usec'] / max(1, r['count']):>7.1f} {r['max_usec']:>8.1f}")
        return out


# --- profile (perf) --------------------------------------------------------------------------
class Profile(Recipe):
    name = "profile"
    question = "where the CPUs spend their time (sampling, kernel and user stacks)"
    overhead = ("low: 99 samples per second per CPU with frame-pointer stacks (about 1% of one "
                "CPU), plus `perf script` after the run; user stacks of code built without frame "
                "pointers are cut short")

    def __init__(self, freq: int = 99, pid: int | None = None, **opts):
        super().__init__(**opts)
        self.freq, self.pid = freq, pid
        self.rec = None

    def session(self, seconds=10, **kw):
        from .perf import Record

        self.rec = Record(seconds=seconds or 10, freq=self.freq, pid=self.pid)
        return _PerfSession(self.rec, seconds)

    def result(self, t) -> dict:
        from .perf import hottest

        r = self.rec
        folded = r.folded
        return {"recipe": self.name, "question": self.question, "backend": "perf",
                "seconds": round(t.duration_s, 3), "events": len(r.samples), "lost": r.lost or 0,
                "truncated": False, "missing": [], "overhead": self.overhead, "errors": [],
                "hottest": [{"function": f, "samples": n} for f, n in hottest(r.samples, 25)],
                "folded": dict(folded.most_common(2000))}

    def render_body(self, res):
        if not res["hottest"]:
            return []
        total = max(1, res["events"])
        out = [f"{'SAMPLES':>8} {'%':>6}  FUNCTION (self)"]
        for h in res["hottest"][:25]:
            out.append(f"{h['samples']:>8} {100 * h['samples'] / total:>6.1f}  {h['function']}")
        return out


class _PerfSession:
    """Gives a perf Record the same shape as a tracefs session (`with ... as t: t.wait()`)."""

    def __init__(self, rec, seconds):
        self.rec, self.seconds = rec, seconds
        self.started = self.ended = 0.0

    @property
    def duration_s(self):
        import time
        return (self.ended or time.monotonic()) - self.started

    def wait(self):
        self.rec.wait()

    def stop(self):
        self.rec.stop()

    def __enter__(self):
        import time
        self.rec.__enter__()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        import time
        self.ended = time.monotonic()
        self.rec.__exit__(*exc)


RECIPES = {r.name: r for r in (Retrans, Reclaim, Compaction, Writeback, Buflimit, Mmap, Oom,
                               Kmalloc, Softirq, Profile)}


def get(name: str):
    from ..errors import UsageError

    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None
