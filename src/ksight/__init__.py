"""ksight: a Linux kernel performance doctor.

The library is layered so that data flows one way:
kernel text -> ksight.sources (pure parsers) -> ksight.model (Snapshot, Window rates)
-> ksight.diagnose (rules -> findings) -> ksight.render (text, json).
Every read of the kernel goes through a ksight.fs.Root, so the same code runs on the live
machine, on a capture from another machine, and on test fixtures.
"""

__version__ = "0.1.0"
