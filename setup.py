"""Build the optional C fast paths (ksight._procscan, the smaps readers) and install the `ksight`
command (scripts/ksight).

pyproject.toml holds the project metadata; this file adds the extension modules and the script.
The extensions are optional: when one cannot be compiled (no C compiler or no Python headers),
the install carries on without it and ksight uses its Python path (ksight/collect/processes.py,
sources/proc_pid/smaps.py, `ksight pmap`'s ordinary path).
"""

from setuptools import Extension, setup

setup(scripts=["scripts/ksight"],  # the `ksight` command (see pyproject.toml: not an entry point)
      ext_modules=[Extension("ksight._procscan", ["src/ksight/_procscan.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # the C parser of /proc/PID/smaps (sources/proc_pid/smaps.parse_fast)
                   Extension("ksight._smapsparse", ["src/ksight/_smapsparse.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # the light smaps reader: headers, Rss, Anonymous (sources/process_maps.py)
                   Extension("ksight._smapslight", ["src/ksight/_smapslight.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # the usual cases of a delta frame's tree patch (store/samples_tree.patch)
                   Extension("ksight._treepatch", ["src/ksight/_treepatch.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra"]),
                   # `ksight pmap PID`'s live fast path: smaps to pmap -x rows (views/pmap_fast.py)
                   Extension("ksight._smapspmap", ["src/ksight/_smapspmap.c"], optional=True,
                             depends=["src/ksight/_smapstext.h"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra"])])
