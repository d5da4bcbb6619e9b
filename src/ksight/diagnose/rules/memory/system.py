"""Memory held outside processes: memory.shmem-growth, memory.slab-leak, memory.vmalloc-leak,
memory.oom-kill, memory.unexplained."""
