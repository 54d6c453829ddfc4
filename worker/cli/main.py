"""The `retention` command: one Typer app, each group of commands registered from its own module.

`RetentionGroup.main` is the one place errors become what the user sees (docs/interface.md, exit
status): the environment is validated before any command does work; a refusal (bad configuration, a busy
account, a path that cannot be written, an unreachable lock store) is one line and exit 2; any other failure
is one line naming the step, the account and the exception class, and exit 1. Never a traceback, never an
exception's text that could carry SQL, stored data or a secret (worker/errors.py), unless asked with
`--debug` or RETENTION_DEBUG=1. Commands need no error handling of their own beyond their specific refusals.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from worker.cli import accounts, demo, metrics_cmd, ops, revenue, risk, sync_cmd
from worker.cli.common import EXIT_FAILED, EXIT_REFUSED
from worker.errors import failure_line
from worker.locks import AccountBusy, LockUnavailable
from worker.logging import configure_logging
from worker.secrets import SecretError
from worker.settings import ConfigError, validate_environment

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
)

for module in (accounts, sync_cmd, revenue, metrics_cmd, risk, ops, demo):
    module.register(app)

REFUSALS = (ConfigError, SecretError, AccountBusy, LockUnavailable)


def main() -> None:
    """Entry point (pyproject's `retention` script)."""
    app(prog_name="retention")


def quiet_logs(debug: bool) -> None:
    """A command speaks through its output and its one error line: library log records (a driver warning
    that names the host, a retry notice) stay out of the terminal unless --debug asks for them. `worker` and
    `beat` install their JSON log handler themselves."""
    root = logging.getLogger()
    if debug:
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
    if isinstance(exc, REFUSALS):
        line, code = str(exc), EXIT_REFUSED
    elif isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or type(exc).__name__
        line = f"cannot use {exc.filename}: {reason}; check that its folder exists and can be written"
        code = EXIT_REFUSED
    else:
        line, code = failure_line(exc), EXIT_FAILED
        if not debug:
            line += f"; run again with {DEBUG_FLAG} for the traceback"
    print(f"error: {line}", file=sys.stderr)
    return code
