"""Threads in state D (uninterruptible sleep) now, with their wait channel and kernel stack.

Read from /proc/PID/task/TID/{stat,wchan,stack}. Opt-in (SYSTEM default=False): it walks every
thread of every process, which `ksight cpu --blocked` and the recorder's triggers ask for, and a
capture that names it (`ksight capture --with blocked_tasks`) holds the same files, so
the view works `--from` it. Kernel stacks need root (CAP_SYS_ADMIN); without them the tasks are
still listed with their wait channel and `stack_reason` says why stacks are missing.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable

PATH = "proc"
MAX_TASKS = 2000  # a machine with more threads in D than this has its answer already


@dataclass(frozen=True)
class BlockedTask:
    pid: int  # thread group (process)
    tid: int
    comm: str
    wchan: str | None  # the kernel function it sleeps in (None: "0", absent or unreadable)
    stack: tuple[str, ...] | None  # kernel stack, innermost first (None: not readable)


@dataclass(frozen=True)
class BlockedTasks:
    tasks: tuple[BlockedTask, ...]
    stack_reason: str | None  # why some kernel stacks are absent
    notes: tuple[str, ...] = ()


def parse_stack(text: str, path: str = "stack") -> tuple[str, ...]:
    """/proc/PID/stack: '[<0>] io_schedule+0x42/0x70' lines -> ('io_schedule', ...)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("[<"):
            _, sep, s = s.partition("] ")
            if not sep:
                raise ParseError(path, lineno, line, "expected '[<addr>] function+off/len'")
        fn = s.split("+", 1)[0].split(" ", 1)[0]
        if fn:
            out.append(fn)
    return tuple(out)


def state_and_comm(text: str) -> tuple[str, str] | None:
    """(state, comm) from a /proc/PID/stat line; comm may hold spaces and parentheses."""
    l, r = text.find("("), text.rfind(")")
    if l < 0 or r < l:
        return None
    rest = text[r + 1:].split()
    return (rest[0], text[l + 1:r]) if rest else None


def read(root, *, max_tasks: int = MAX_TASKS) -> BlockedTasks:
    tasks: list[BlockedTask] = []
    stack_reason = None
    notes: list[str] = []
    pids = [int(n) for n in root.listdir("proc") if n.isdigit()]  # Unavailable propagates
    listed = 0
    for pid in sorted(pids):
        try:
            tids = [int(n) for n in root.listdir(f"proc/{pid}/task") if n.isdigit()]
        except Unavailable:
            continue  # exited between the listing and now
        listed += 1
        for tid in sorted(tids):
            base = f"proc/{pid}/task/{tid}"
            try:
                sc = state_and_comm(root.read_text(base + "/stat"))
            except Unavailable:
                continue
            if sc is None or sc[0] != "D":
                continue
            wchan = stack = None
            try:
                w = root.read_text(base + "/wchan").strip()
                wchan = w if w and w != "0" else None
            except Unavailable:
                pass
            try:
                stack = parse_stack(root.read_text(base + "/stack"), base + "/stack")
            except Unavailable as u:
                stack_reason = stack_reason or f"{base}/stack: {u.reason} (kernel stacks need root)"
            except ParseError as e:
                stack_reason = stack_reason or str(e)
            tasks.append(BlockedTask(pid, tid, sc[1], wchan, stack))
            if len(tasks) >= max_tasks:
                notes.append(f"stopped at {max_tasks} tasks in D state")
                return BlockedTasks(tuple(tasks), stack_reason, tuple(notes))
    if pids and not listed:
        # every live process has a task directory: none at all means a capture (or a tree)
        # that did not record them, not "no thread in D"
        raise Unavailable("proc/PID/task", "no task directories (not captured: `ksight capture "
                          "--with blocked_tasks` records them)")
    return BlockedTasks(tuple(tasks), stack_reason, tuple(notes))
