"""The `retention` command: one Typer app, each group of commands registered from its own module.

Help is Click's plain layout (`rich_markup_mode=None`): flags show as flags (`--json`, not `--json <bool>`)
and `retention --help` does not pay for Rich's help renderer at start-up.
"""

from __future__ import annotations

import sys

import typer

from worker.cli import accounts, demo, metrics_cmd, ops, revenue, risk, sync_cmd, watch_cmd
from worker.cli.common import EXIT_REFUSED

app = typer.Typer(
    name="retention",
    help="Honest revenue retention from Stripe: MRR, NRR, GRR, logo retention, at-risk accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (accounts, sync_cmd, revenue, metrics_cmd, risk, ops, watch_cmd, demo):
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
    """Honest revenue retention from Stripe: MRR, NRR, GRR, logo retention, at-risk accounts."""


def _is_refusal(exc: Exception) -> bool:
    """A bad environment or a wrong secret key. Their modules are imported only by the commands that read
    settings or secrets, so the classes are looked up where they were loaded, never imported here."""
    kinds = [
        getattr(sys.modules[module], name)
        for module, name in (("worker.settings", "ConfigError"), ("worker.secrets", "SecretError"))
        if module in sys.modules
    ]
    return bool(kinds) and isinstance(exc, tuple(kinds))


def main() -> None:
    """Entry point: a bad environment or a wrong secret key is a refusal (exit 2), not a traceback."""
    try:
        app()
    except Exception as exc:
        if not _is_refusal(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
