"""Build the optional C fast path of the process scan (ksight._procscan).

pyproject.toml holds the project metadata; this file only adds the extension module. It is
optional: when it cannot be compiled (no C compiler or no Python headers), the install carries
on without it and ksight uses its pure-Python process scan (see ksight/collect/processes.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ksight._procscan", ["src/ksight/_procscan.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # the C parser of /proc/PID/smaps (sources/proc_pid/smaps.parse_fast)
                   Extension("ksight._smapsparse", ["src/ksight/_smapsparse.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # the light smaps reader: headers, Rss, Anonymous (sources/process_maps.py)
                   Extension("ksight._smapslight", ["src/ksight/_smapslight.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # `ksight pmap PID`'s live fast path: smaps to pmap -x rows (views/pmap_fast.py)
                   Extension("ksight._smapspmap", ["src/ksight/_smapspmap.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])])
