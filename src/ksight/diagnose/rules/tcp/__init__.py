"""TCP rules: retransmissions, listen queues, SYN floods, connection states, memory, buffers.

Counters are per network namespace (collect/netns_counters.py): each rule judges every namespace
a process lives in, and names it in the finding's subject, so a listener overflowing inside a
container is found from the host. Judged per interval (peaks), on rates and shares, never on
counts since boot: a healthy busy server is quiet.
"""

from . import listen, retrans, states, memory  # noqa: F401  (registers the rules)
