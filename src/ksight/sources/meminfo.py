"""/proc/meminfo: the kernel's memory accounting, in kB.

Typed fields cover what ksight reasons about; `fields` keeps every line the kernel printed
(so a field added by a new kernel is still usable). A field the kernel did not print is None:
e.g. MemAvailable appeared in 3.14, Shmem in 2.6.32, KReclaimable in 4.20.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Mapping

from ..fs import Root
from ._text import colon_kv

PATH = "proc/meminfo"

# meminfo name -> dataclass attribute
_NAMES = {
    "MemTotal": "mem_total_kb", "MemFree": "mem_free_kb", "MemAvailable": "mem_available_kb",
    "Buffers": "buffers_kb", "Cached": "cached_kb", "SwapCached": "swap_cached_kb",
    "Active": "active_kb", "Inactive": "inactive_kb",
    "Active(anon)": "active_anon_kb", "Inactive(anon)": "inactive_anon_kb",
    "Active(file)": "active_file_kb", "Inactive(file)": "inactive_file_kb",
    "Unevictable": "unevictable_kb", "Mlocked": "mlocked_kb",
    "SwapTotal": "swap_total_kb", "SwapFree": "swap_free_kb",
    "Dirty": "dirty_kb", "Writeback": "writeback_kb", "AnonPages": "anon_pages_kb",
    "Mapped": "mapped_kb", "Shmem": "shmem_kb", "KReclaimable": "kreclaimable_kb",
    "Slab": "slab_kb", "SReclaimable": "sreclaimable_kb", "SUnreclaim": "sunreclaim_kb",
    "KernelStack": "kernel_stack_kb", "PageTables": "page_tables_kb",
    "NFS_Unstable": "nfs_unstable_kb", "Bounce": "bounce_kb", "WritebackTmp": "writeback_tmp_kb",
    "CommitLimit": "commit_limit_kb", "Committed_AS": "committed_as_kb",
    "VmallocTotal": "vmalloc_total_kb", "VmallocUsed": "vmalloc_used_kb",
    "VmallocChunk": "vmalloc_chunk_kb", "Percpu": "percpu_kb",
    "HardwareCorrupted": "hardware_corrupted_kb", "AnonHugePages": "anon_huge_pages_kb",
    "ShmemHugePages": "shmem_huge_pages_kb", "ShmemPmdMapped": "shmem_pmd_mapped_kb",
    "FileHugePages": "file_huge_pages_kb",
    "HugePages_Total": "huge_pages_total", "HugePages_Free": "huge_pages_free",
    "HugePages_Rsvd": "huge_pages_rsvd", "HugePages_Surp": "huge_pages_surp",
    "Hugepagesize": "hugepage_size_kb", "Hugetlb": "hugetlb_kb",
}


@dataclass(frozen=True)
class Meminfo:
    mem_total_kb: int | None = None
    mem_free_kb: int | None = None
    mem_available_kb: int | None = None
    buffers_kb: int | None = None
    cached_kb: int | None = None
    swap_cached_kb: int | None = None
    active_kb: int | None = None
    inactive_kb: int | None = None
    active_anon_kb: int | None = None
    inactive_anon_kb: int | None = None
    active_file_kb: int | None = None
    inactive_file_kb: int | None = None
    unevictable_kb: int | None = None
    mlocked_kb: int | None = None
    swap_total_kb: int | None = None
    swap_free_kb: int | None = None
    dirty_kb: int | None = None
    writeback_kb: int | None = None
    anon_pages_kb: int | None = None
    mapped_kb: int | None = None
    shmem_kb: int | None = None
    kreclaimable_kb: int | None = None
    slab_kb: int | None = None
    sreclaimable_kb: int | None = None
    sunreclaim_kb: int | None = None
    kernel_stack_kb: int | None = None
    page_tables_kb: int | None = None
    nfs_unstable_kb: int | None = None
    bounce_kb: int | None = None
    writeback_tmp_kb: int | None = None
    commit_limit_kb: int | None = None
    committed_as_kb: int | None = None
    vmalloc_total_kb: int | None = None
    vmalloc_used_kb: int | None = None
    vmalloc_chunk_kb: int | None = None
    percpu_kb: int | None = None
    hardware_corrupted_kb: int | None = None
    anon_huge_pages_kb: int | None = None
    shmem_huge_pages_kb: int | None = None
    shmem_pmd_mapped_kb: int | None = None
    file_huge_pages_kb: int | None = None
    huge_pages_total: int | None = None
    huge_pages_free: int | None = None
    huge_pages_rsvd: int | None = None
    huge_pages_surp: int | None = None
    hugepage_size_kb: int | None = None
    hugetlb_kb: int | None = None
    # every line as printed (name -> value in the file's unit), including ones not typed above
    fields: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)


def _drop_byte_table(text: str) -> str:
    """2.4-era kernels (and some emulations of them) open with a table in bytes:
    "total: used: free: shared: buffers: cached:", then "Mem: ..." and "Swap: ..." rows. The
    same numbers follow as "Name: value kB" lines, so the table is skipped (blanked, keeping
    line numbers for error messages)."""
    if not text.lstrip().startswith("total:"):
        return text
    lines = text.splitlines()
    for i, line in enumerate(lines[:3]):
        toks = line.split()
        if toks and (toks[0] == "total:" or (toks[0] in ("Mem:", "Swap:") and len(toks) > 2)):
            lines[i] = ""
    return "\n".join(lines)


def parse(text: str, path: str = PATH) -> Meminfo:
    raw = colon_kv(_drop_byte_table(text), path)
    typed = {attr: raw[name] for name, attr in _NAMES.items() if name in raw}
    return Meminfo(**typed, fields=raw)


def read(root: Root) -> Meminfo:
    return parse(root.read_text(PATH))
