"""The command line's one way out for bad input: every command refuses a missing results folder with one line
naming it, exit status 2, no traceback; and the Python API's run_sweep is the function the command calls."""

from __future__ import annotations

import pytest

import grokjax
from grokjax.cli import main
from grokjax.engine import sweep

COMMANDS = [["info"], ["check"], ["plot"], ["explore"], ["prune"], ["refine", "--budget", "4"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_a_missing_folder_in_one_line(command, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main([command[0], str(missing), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err
    assert err.startswith(("grokjax: error: ", f"grokjax explore: {missing}: "))
    assert not missing.exists(), "a refused command writes nothing"


def test_run_sweep_is_the_function_the_command_calls():
    assert grokjax.run_sweep is sweep.run
