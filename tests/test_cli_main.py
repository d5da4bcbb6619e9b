"""The `ksight` entry point builds only the chosen subcommand's parser; `--help` still lists
every command, and every command's own `--help` works."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from ksight.cli.main import COMMANDS, HELPS, chosen_command, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_static_help_is_the_modules_help(name):
    assert HELPS[name] == importlib.import_module(f"ksight.cli.{COMMANDS[name]}").HELP


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"    {name}" in out
    assert "diagnose this machine" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_commands_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ksight {name}")
    assert "options:" in out


def test_chosen_command():
    assert chosen_command(["check", "--json"]) == "check"
    assert chosen_command(["--version"]) is None
    assert chosen_command(["-h", "show"]) == "show"
    assert chosen_command(["chek"]) is None
    assert chosen_command([]) is None


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["chek"])
    assert e.value.code == 3 and "invalid choice: 'chek'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_check_imports_no_other_command():
    code = ("import sys\nfrom ksight.cli.main import main\n"
            "try:\n    main(['check', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('ksight.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    mods = eval(out.strip().splitlines()[-1])
    others = {f"ksight.cli.{m}" for n, m in COMMANDS.items() if n != "check"}
    assert "ksight.cli.check" in mods and not others & set(mods), mods
