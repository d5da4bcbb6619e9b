"""Pure helpers of the tracefs module: finding the mount point, per-CPU stats."""

from ksight.trace.tracefs import tracefs_mount_point, parse_stats

MI = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
"""


def test_mountinfo():
    assert tracefs_mount_point(MI) is None
    assert tracefs_mount_point(MI + "42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw\n") == "/sys/kernel/tracing"
    # old kernels: only debugfs, tracing lives below it
    assert tracefs_mount_point(MI + "40 23 0:7 / /sys/kernel/debug rw - debugfs debugfs rw\n") == "/sys/kernel/debug/tracing"
    assert tracefs_mount_point("garbage\n\n") is None


def test_stats():
    # per_cpu/cpu0/stats as 6.18 prints it
    text = ("entries: 3\noverrun: 7\ncommit overrun: 0\nbytes: 120\noldest event ts:  1723.595883\n"
            "now ts:  1723.595883\ndropped events: 2\nread events: 97\n")
    s = parse_stats(text)
    assert s["overrun"] == 7 and s["dropped events"] == 2 and s["read events"] == 97
    assert "now ts" not in s
