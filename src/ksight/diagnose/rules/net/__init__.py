"""Network device rules: transmit drops per interface, softnet drops and squeezes per CPU.

These counters (/proc/net/dev, /proc/net/softnet_stat) are judged per interval: a drop rate,
not a count since boot.
"""

from . import devices  # noqa: F401  (registers the rules)
