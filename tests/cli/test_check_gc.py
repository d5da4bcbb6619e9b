"""The console script runs `check` with the cyclic garbage collector off (cli/main.py FAST_EXIT):
a short live window makes few cycles and exits with os._exit. A long window, a capture or a
recording must turn it back on, or a day-long window would keep every cycle it made."""

from __future__ import annotations

import gc
import os

import pytest

from ksight.cli.main import main

CAPTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "captures",
                       "vm-6.18.tar.zst")


@pytest.fixture
def gc_off():
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


@pytest.mark.parametrize("argv,on", [
    (["check", "--json", "--interval", "0.04", "--step", "0.02", "--area", "pagecache"], False),
    (["check", "--json", "--interval", "0.31", "--step", "0.01", "--area", "pagecache"], True),
    (["check", "--json", "--from", CAPTURE, "--area", "pagecache"], True),
])
def test_long_windows_and_captures_collect_cycles(gc_off, capsys, argv, on):
    rc = main(argv)
    assert rc in (0, 1, 2, 3), capsys.readouterr().err
    assert gc.isenabled() is on
