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
import json
import os
import time

from .. import pids
from ..fs import sysctl_path

# called once with a sentence when a guard has to wait for another lab run's lock
notify = None

PROC = "/"
# One guard at a time on the machine: two guards that interleave (A saves, B saves A's value,
# A restores, B restores A's value) leave the machine changed. Every guard holds this lock
# from its first set() until restore(); another guard waits (up to LOCK_WAIT_S) for it, and
# says so through `notify` (the CLI prints it). The holder unlinks the file under the lock
# when it leaves; a waiter that then gets the lock on the unlinked file sees that its inode is
# no longer the path's and opens the path again.
LOCK_PATH = "/run/ksight-lab-sysctl.lock"
LOCK_WAIT_S = 180.0
# Crash recovery (as tuned does): the saved values are also written to this journal, atomically,
# before any change. A guard that is killed (-9) leaves it behind; the next guard to take the
# lock, or `ksight lab cleanup`, restores from it. A clean restore deletes it.
JOURNAL_PATH = "/run/ksight-lab-sysctl.json"

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


def _restore_pairs(saved: list[tuple[str, str]]) -> list[str]:
    """Write saved values back, newest first. Returns the errors."""
    errors = []
    for name, old in reversed(saved):
        if name in _PAIRS and old.strip() == "0":
            continue  # the partner held the setting; restoring the partner brings it back
        try:
            if read_sysctl(name) != old:
                write_sysctl(name, old)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    return errors


def recover_journal(journal_path: str = JOURNAL_PATH) -> list[str]:
    """Restore the sysctls a killed guard left changed. Call only while holding the lock (or
    when no guard can be running). Returns the names restored."""
    try:
        with open(journal_path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        os.unlink(journal_path)  # a torn journal: nothing was changed after its failed write
        return []
    saved = [(n, v) for n, v in doc.get("saved", [])]
    errors = _restore_pairs(saved)
    if errors:
        raise OSError("could not restore sysctls from " + journal_path + ": " + "; ".join(errors))
    os.unlink(journal_path)
    return [f"sysctl {n} restored to {v!r} (left changed by lab run pid {doc.get('pid')})"
            for n, v in saved]


class SysctlGuard:
    def __init__(self, lock_path: str = LOCK_PATH, journal_path: str | None = None) -> None:
        self._saved: list[tuple[str, str]] = []  # (name, old value) in order of first write
        self._lock_path = lock_path
        self._journal = journal_path or (JOURNAL_PATH if lock_path == LOCK_PATH
                                         else lock_path + ".json")
        self._lock_fd: int | None = None
        self._eid: int | None = None
        self.waited_s = 0.0
        self.recovered: list[str] = []

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        deadline = time.monotonic() + LOCK_WAIT_S
        told = False
        t0 = time.monotonic()
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise TimeoutError(f"another ksight lab run held {self._lock_path} for "
                                           f"{LOCK_WAIT_S:g} s; gave up") from None
                    if not told and notify is not None:
                        told = True
                        notify(f"waiting for another ksight lab run to finish (it holds "
                               f"{self._lock_path}); the run starts when it ends")
                    time.sleep(0.05)
            try:   # the holder unlinks the file as it leaves: is ours still the path's?
                same = os.fstat(fd).st_ino == os.stat(self._lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.waited_s = time.monotonic() - t0
        self._lock_fd = fd
        # we hold the lock, so any journal left behind belongs to a guard that died
        self.recovered = recover_journal(self._journal)

    def _write_journal(self) -> None:
        if self._eid is None:   # the next ksight command restores from the journal if we die
            self._eid = pids.register("sysctl", journal=self._journal)
        tmp = self._journal + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pid": os.getpid(), "saved": self._saved}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._journal)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            if not os.path.exists(self._journal):
                try:   # the last user leaves no lock file behind (unlinked while we hold it)
                    os.unlink(self._lock_path)
                except OSError:
                    pass
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
            self._write_journal()  # before the change: a crash after it can always be undone
        write_sysctl(name, value)

    @property
    def saved(self) -> dict[str, str]:
        return dict(self._saved)

    def restore(self) -> list[str]:
        """Write every saved value back (newest first). Returns errors, and raises if any."""
        errors = _restore_pairs(self._saved)
        if not errors:
            self._saved = []
            if self._lock_fd is not None:
                try:
                    os.unlink(self._journal)
                except FileNotFoundError:
                    pass
            pids.unregister(self._eid)
            self._eid = None
        self._unlock()
        if errors:
            raise OSError("could not restore sysctls: " + "; ".join(errors))
        return errors

    def __enter__(self) -> "SysctlGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


__all__ = ["SysctlGuard", "read_sysctl", "write_sysctl", "recover_journal"]
