import pytest

from ksight.errors import ParseError
from ksight.sources.proc_pid import limits
from tests.conftest import corpus_root


def test_procfs_26231():
    # procfs proc_limits_test.go: cpu time unlimited (-1 there), open files 2048,
    # msgqueue size 819200, address space 8589934592
    lim = limits.read(corpus_root("procfs"), 26231)
    assert lim.get("Max cpu time").soft is None
    assert lim.open_files == limits.Limit("Max open files", 2048, 4096, "files")
    assert lim.get("Max msgqueue size").soft == 819200
    assert lim.get("Max address space").soft == 8589934592 and lim.get("Max address space").hard is None
    assert lim.get("Max nice priority") == limits.Limit("Max nice priority", 0, 0, None)
    assert len(lim.limits) == 16


@pytest.mark.parametrize("text", ["", "Limit  Soft Limit  Hard Limit  Units\n",
                                  "Max open files   1024\n", "Max open files   lots   4096   files\n"])
def test_malformed(text):
    with pytest.raises(ParseError):
        limits.parse(text)
