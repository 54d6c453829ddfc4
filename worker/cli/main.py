"""The `retention` command: one Typer app, each group of commands registered from its own module.

Help is Click's plain layout (`rich_markup_mode=None`): flags show as flags (`--json`, not `--json <bool>`)
and `retention --help` does not pay for Rich's help renderer at start-up.

`RetentionGroup.main` is the one place errors become what the user sees (docs/interface.md, exit
status): the environment is validated before any command does work; a refusal (bad configuration, a wrong
secret key, a busy account, a path that cannot be written, an unreachable lock store) is one line and exit 2;
any other failure is one line naming the step, the account and the exception class, and exit 1. Never a
traceback, never an exception's text that could carry SQL, stored data or a secret (worker/errors.py),
unless asked with `--debug` or RETENTION_DEBUG=1. Commands need no error handling of their own beyond their
specific refusals. Nothing heavy is imported here (start-up time): the settings when a command runs, the
error vocabulary when something failed.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from worker.cli import accounts, demo, metrics_cmd, ops, rates_cmd, revenue, risk, sync_cmd, watch_cmd
from worker.cli.common import EXIT_FAILED, EXIT_REFUSED

DEBUG_FLAG = "--debug"


class RetentionGroup(TyperGroup):
    """The app's click group: every invocation (the installed command, CliRunner in tests) goes through
    `main`, so the validation and the one-line errors hold everywhere."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv, debug = split_debug(list(sys.argv[1:] if args is None else args))
        debug = debug or os.environ.get("RETENTION_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
        quiet_logs(debug)
        try:
            if does_work(argv):
                from worker.settings import validate_environment

                validate_environment()
            return super().main(argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        except Exception as exc:
            if not standalone_mode:
                raise
            sys.exit(report(exc, debug))


app = typer.Typer(
    name="retention",
    cls=RetentionGroup,
    help=(
        "Honest revenue retention from Stripe: MRR, NRR, GRR, logo retention, at-risk accounts. "
        "Add --debug (or set RETENTION_DEBUG=1) to see a failure's traceback."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (accounts, sync_cmd, rates_cmd, revenue, metrics_cmd, risk, ops, watch_cmd, demo):
    module.register(app)


def version() -> str:
    """The installed package's version (pyproject.toml), as `pip show stripe-retention` gives it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("stripe-retention")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"retention {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
    ),
) -> None:
    """Honest revenue retention from Stripe: MRR, NRR, GRR, logo retention, at-risk accounts. Add --debug
    (or set RETENTION_DEBUG=1) to see a failure's traceback."""


REFUSALS = (
    ("worker.settings", "ConfigError"),
    ("worker.secrets", "SecretError"),
    ("worker.locks", "AccountBusy"),
    ("worker.locks", "LockUnavailable"),
)


def _is_refusal(exc: BaseException) -> bool:
    """A bad environment, a wrong secret key, a busy account, an unreachable lock store. Their modules are
    imported only by the commands that use them, so the classes are looked up where they were loaded, never
    imported here."""
    kinds = [getattr(sys.modules[module], name) for module, name in REFUSALS if module in sys.modules]
    return bool(kinds) and isinstance(exc, tuple(kinds))


def main() -> None:
    """Entry point (pyproject's `retention` script)."""
    app(prog_name="retention")


def quiet_logs(debug: bool) -> None:
    """A command speaks through its output and its one error line: library log records (a driver warning
    that names the host, a retry notice) stay out of the terminal unless --debug asks for them. `worker` and
    `beat` install their JSON log handler themselves."""
    root = logging.getLogger()
    if debug:
        from worker.logging import configure_logging

        configure_logging("INFO")
    elif not root.handlers:
        root.addHandler(logging.NullHandler())


def split_debug(args: list[str]) -> tuple[list[str], bool]:
    """Takes `--debug` out wherever it stands before a `--` (it is the app's, not a command's option)."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != DEBUG_FLAG] + args[end:]
    return kept, len(kept) != len(args)


def does_work(args: list[str]) -> bool:
    """Help and the version need no configuration; everything else is refused on a bad one."""
    return bool(args) and not {"--help", "-h", "--version"} & set(args)


def report(exc: BaseException, debug: bool) -> int:
    """Prints the one line (after the traceback under --debug) and returns the exit status."""
    if debug:
        traceback.print_exception(exc)
    if _is_refusal(exc):
        line, code = str(exc), EXIT_REFUSED
    elif isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        line = f"cannot use {exc.filename}: {reason}; check that its folder exists and can be written"
        code = EXIT_REFUSED
    else:
        from worker.errors import failure_line

        line, code = failure_line(exc), EXIT_FAILED
        if not debug:
            line += f"; run again with {DEBUG_FLAG} for the traceback"
    print(f"error: {line}", file=sys.stderr)
    return code
