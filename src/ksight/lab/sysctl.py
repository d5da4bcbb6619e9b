"""Change sysctls for the length of a `with` block, and put them back (live only, root).

    with SysctlGuard() as g:
        g.set("vm.dirty_bytes", 32 << 20)
        ...
    # every changed sysctl holds its old value again (restored in reverse order)

The old value is saved before the first write of each name (like tuned: save, apply, roll back
in reverse). Writes go through /proc/sys. vm.dirty_bytes/vm.dirty_ratio (and the background
pair) are two views of one setting: writing one zeroes the other. So the guard also saves the
partner, and on restore skips a saved 0 of the pair (the partner was in charge; writing the
partner back brings the right one back, and the kernel refuses dirty_bytes=0 anyway).
"""

from __future__ import annotations

import fcntl
import os
import time

from ..fs import sysctl_path

PROC = "/"
# One guard at a time on the machine: two guards that interleave (A saves, B saves A's value,
# A restores, B restores A's value) leave the machine changed. Every guard holds this lock
# from its first set() until restore(); another guard waits (up to LOCK_WAIT_S) for it.
LOCK_PATH = "/run/ksight-lab-sysctl.lock"
LOCK_WAIT_S = 180.0

# writing one of these zeroes the other; a saved 0 means "the other one was in charge"
_PAIRS = {
    "vm.dirty_bytes": "vm.dirty_ratio", "vm.dirty_ratio": "vm.dirty_bytes",
    "vm.dirty_background_bytes": "vm.dirty_background_ratio",
    "vm.dirty_background_ratio": "vm.dirty_background_bytes",
}


def read_sysctl(name: str) -> str:
    with open(PROC + sysctl_path(name)) as f:
        return f.read().strip()


def write_sysctl(name: str, value) -> None:
    with open(PROC + sysctl_path(name), "w") as f:
        f.write(str(value))


class SysctlGuard:
    def __init__(self, lock_path: str = LOCK_PATH) -> None:
        self._saved: list[tuple[str, str]] = []  # (name, old value) in order of first write
        self._lock_path = lock_path
        self._lock_fd: int | None = None

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(f"another ksight lab run holds {self._lock_path}") from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def set(self, name: str, value) -> None:
        self._lock()
        if name not in {n for n, _ in self._saved}:
            old = read_sysctl(name)
            self._saved.append((name, old))
            # save the partner too, so restoring puts back whichever of the pair was in charge
            partner = _PAIRS.get(name)
            if partner and partner not in {n for n, _ in self._saved}:
                self._saved.insert(len(self._saved) - 1, (partner, read_sysctl(partner)))
        write_sysctl(name, value)

    @property
    def saved(self) -> dict[str, str]:
        return dict(self._saved)

    def restore(self) -> list[str]:
        """Write every saved value back (newest first). Returns errors, and raises if any."""
        errors = []
        while self._saved:
            name, old = self._saved.pop()
            if name in _PAIRS and old.strip() == "0":
                continue  # the partner held the setting; restoring the partner brings it back
            try:
                if read_sysctl(name) != old:
                    write_sysctl(name, old)
            except OSError as exc:
                errors.append(f"{name}: {exc}")
        self._unlock()
        if errors:
            raise OSError("could not restore sysctls: " + "; ".join(errors))
        return errors

    def __enter__(self) -> "SysctlGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


__all__ = ["SysctlGuard", "read_sysctl", "write_sysctl"]
