"""The socket_summary source read live (`ksight show socket_summary`): the socket table collected
now (collect/sockets.py), summarised by model/sockets.py. What it holds is sources/socket_summary.py;
a recording stores it instead of the table (record/recorder.py)."""

from __future__ import annotations

from ..errors import KsightError
from ..sources.socket_summary import SocketSummary


def read(root, processes: dict | None = None) -> SocketSummary:
    """Collect the socket table now (owners from `processes` when given) and summarise it, with
    the local port range of ksight's namespace and the other namespaces' counters."""
    from ..model.sockets import summarise
    from .sockets import collect

    table, _missing = collect(root, processes)
    rng = None
    try:
        from ..sources import sysctl

        sc = sysctl.read(root)
        rng = sc.ints("net.ipv4.ip_local_port_range")
    except KsightError:  # the range is optional: destinations are then counted over every port
        rng = None
    from .netns_counters import collect as collect_netns_counters

    nsc, _nmissing = collect_netns_counters(root, table)  # as the recorder keeps them
    return summarise(table, port_range=rng, ns_counters=nsc)
