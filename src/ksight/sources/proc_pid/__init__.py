"""Parsers for per-process files under /proc/PID (one module per file). A PID may exit while we
read it: the Root then raises Unavailable("process exited"), which the process scan handles."""
