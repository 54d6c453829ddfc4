"""Every `retention` command answers --help, including commands other modules register later.

The command list is read from the Typer app itself, so a new command is covered without editing this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from worker.cli.main import app


def _subcommands(command: Any) -> dict[str, Any]:
    # Typer vendors its own click, so groups are recognised by their `commands`, not by a click class.
    return dict(getattr(command, "commands", None) or {})


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path under `command`: ("connect",), ("db",), ("db", "upgrade"), ..."""
    paths = [prefix]
    for name, sub in sorted(_subcommands(command).items()):
        paths.extend(_paths(sub, (*prefix, name)))
    return paths


PATHS = _paths(typer.main.get_command(app))


def _subcommands_of(path: tuple[str, ...]) -> dict[str, Any]:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = _subcommands(command)[name]
    return _subcommands(command)


def test_the_foundation_commands_are_registered() -> None:
    assert {("connect",), ("accounts",), ("disconnect",), ("db",), ("db", "upgrade")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "retention")
def test_help(cli: CliRunner, path: tuple[str, ...]) -> None:
    result = cli.invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    command = typer.main.get_command(app)
    for name in path:
        command = _subcommands(command)[name]
    # a command without a docstring shows nothing useful: every command says what it does
    assert (command.help or command.short_help or "").strip(), f"`retention {' '.join(path)}` has no help"


def test_no_arguments_shows_help(cli: CliRunner) -> None:
    result = cli.invoke(app, [])
    assert "Usage:" in result.output
    assert "connect" in result.output


README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("path", [p for p in PATHS if p and not _subcommands_of(p)], ids=" ".join)
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    """docs/interface.md: every addition is documented in the README's command reference."""
    assert f"retention {' '.join(path)}" in README.read_text()


def test_version(cli: CliRunner) -> None:
    from worker.cli.main import version

    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"retention {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version())


@pytest.mark.parametrize("path", [p for p in PATHS if p and not _subcommands_of(p)], ids=" ".join)
def test_flags_show_as_flags(cli: CliRunner, path: tuple[str, ...]) -> None:
    """`--json`, not `--json <bool>`: a flag takes no value, and the help must not suggest one."""
    text = cli.invoke(app, [*path, "--help"], terminal_width=120).stdout
    assert "<bool>" not in text and "BOOLEAN" not in text
