"""Kernel-mode CPU rules: where the CPU time goes (system, softirq, iowait, hard-irq, steal),
judged per interval and per CPU from /proc/stat as mpstat computes it, and the load average
against the CPUs (runnable vs blocked). `profile` registers the live-only kernel-profile
enrichment of cpu.high-system (diagnose/enrich.py)."""

from . import cputime, load, profile  # noqa: F401  (registers the rules and the enrichment)
