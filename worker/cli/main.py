"""The `retention` command: one Typer app, each group of commands registered from its own module."""

from __future__ import annotations

import sys

import typer

from worker.cli import accounts, demo, metrics_cmd, ops, revenue, risk, sync_cmd, watch_cmd
from worker.cli.common import EXIT_REFUSED
from worker.secrets import SecretError
from worker.settings import ConfigError

app = typer.Typer(
    name="retention",
    help="Honest revenue retention from Stripe: MRR, NRR, GRR, logo retention, at-risk accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (accounts, sync_cmd, revenue, metrics_cmd, risk, ops, watch_cmd, demo):
    module.register(app)


def main() -> None:
    """Entry point: a bad environment or a wrong secret key is a refusal (exit 2), not a traceback."""
    try:
        app()
    except (ConfigError, SecretError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
