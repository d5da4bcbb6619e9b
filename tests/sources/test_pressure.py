import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import pressure
from tests.conftest import corpus_root, corpus_text


def test_procfs_values():
    # procfs/EXPECTED.md + proc_psi_test.go: cpu some avg10 0.10, avg60 2.00, avg300 3.85,
    # total 15, no "full"; memory and io also full avg10 0.20, avg60 3.00, avg300 4.95, total 25
    p = pressure.read(corpus_root("procfs"))
    assert p.cpu.some == pressure.PsiLine(0.10, 2.00, 3.85, 15)
    assert p.cpu.full is None
    for res in (p.memory, p.io):
        assert res.some == pressure.PsiLine(0.10, 2.00, 3.85, 15)
        assert res.full == pressure.PsiLine(0.20, 3.00, 4.95, 25)
    assert p.irq is None  # no proc/pressure/irq in that tree


def test_parse_resource_for_cgroup_files():
    r = pressure.parse_resource(corpus_text("procfs", "proc", "pressure", "io"),
                                "sys/fs/cgroup/x/io.pressure")
    assert r.full.total_usec == 25


def test_one_missing_file_is_none(tmp_path):
    (tmp_path / "proc" / "pressure").mkdir(parents=True)
    (tmp_path / "proc" / "pressure" / "memory").write_text(
        "some avg10=1.00 avg60=0.50 avg300=0.25 total=1234\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")
    p = pressure.read(DirRoot(str(tmp_path)))
    assert p.cpu is None and p.io is None
    assert p.memory.some.total_usec == 1234 and p.memory.full.total_usec == 5


def test_all_missing_is_unavailable(tmp_path):
    (tmp_path / "proc").mkdir()
    with pytest.raises(Unavailable) as ei:
        pressure.read(DirRoot(str(tmp_path)))
    assert "CONFIG_PSI" in ei.value.reason and ei.value.source == "proc/pressure"


def test_unknown_line_kind_is_skipped():
    # procfs TestParsePSIStats: an unknown measurement type must be ignored
    r = pressure.parse_resource("nonesense haha test=fake\n")
    assert r == pressure.PsiResource(None, None)


@pytest.mark.parametrize("text", [
    "",
    "some avg10=0.10 avg60=2.00 avg300=3.85 total=oops\n",  # procfs TestParsePSIStats
    "some avg10=0.10 avg60=2.00 avg300=3.85 total=1\nfull avg10=0.20 avg60=3.00 avg300=test total=25\n",
    "some avg10=0.10 avg60=2.00 avg3",  # truncated mid-line
    "some avg10 avg60=2.00 avg300=3.85 total=1\n",
    "some garbage\n",
])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        pressure.parse_resource(text, "proc/pressure/cpu")
    assert ei.value.path == "proc/pressure/cpu"


def test_live():
    try:
        p = pressure.read(LiveRoot())
    except Unavailable:
        pytest.skip("PSI not enabled on this kernel")
    assert p.cpu.some is not None and p.memory.full is not None and p.io.full is not None
    for line in (p.cpu.some, p.memory.some, p.io.some):
        assert 0 <= line.avg10 <= 100 and line.total_usec >= 0
    # the system-level cpu "full" line (5.13+) is all zeros
    if p.cpu.full is not None:
        assert p.cpu.full.total_usec == 0


def test_one_cut_resource_file_does_not_take_the_others(tmp_path):
    # node_exporter's pressure/irq has no final newline (cut as saved): cpu, memory and io are
    # still read, and irq is reported malformed rather than silently absent
    from ksight.fs import DirRoot
    from ksight.sources import pressure
    from tests.conftest import corpus_text

    d = tmp_path / "proc" / "pressure"
    d.mkdir(parents=True)
    for r in ("cpu", "memory", "io", "irq"):
        (d / r).write_text(corpus_text("node_exporter", "proc", "pressure", r))
    assert not (d / "irq").read_text().endswith("\n")
    p = pressure.read(DirRoot(str(tmp_path)))
    assert p.irq is None and "irq" in p.malformed and "cut" in p.malformed["irq"]
    assert p.memory is not None and p.memory.some is not None and p.cpu is not None
