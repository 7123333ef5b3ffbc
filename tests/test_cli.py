import subprocess
import sys

import pytest

from vidpose.cli import build_parser, main

SUBCOMMANDS = ["train", "test", "eval", "extract", "visualize", "synth", "demo", "config"]


def test_help_lists_every_subcommand():
    result = subprocess.run(
        [sys.executable, "-m", "vidpose.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in SUBCOMMANDS:
        assert f"    {command}" in result.stdout


def test_each_subcommand_has_help():
    parser = build_parser()
    for command in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([command, "--help"])
        assert exit_info.value.code == 0


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
