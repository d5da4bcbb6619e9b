"""/proc/PID/cmdline: the argument vector, NUL-separated (with a trailing NUL).

Empty for kernel threads and zombies. A process may rewrite its arguments (sshd, postgres):
then the text may hold spaces and no NUL, which gives one element.
"""

from __future__ import annotations

from ...fs import Root

PATH = "proc/PID/cmdline"


def path(pid: int) -> str:
    return f"proc/{pid}/cmdline"


def parse(data: bytes | str, path: str = PATH) -> tuple[str, ...]:
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    # Trailing NULs go: a process that rewrote its title in place (setproctitle: postgres,
    # init) leaves NUL padding, indistinguishable from empty last arguments (PCP and psutil
    # drop them too).
    data = data.rstrip("\0")
    if not data:
        return ()
    return tuple(data.split("\0"))


def read(root: Root, pid: int) -> tuple[str, ...]:
    p = path(pid)
    return parse(root.read_bytes(p), p)
