"""Commands that run the service: worker, beat, nightly.

`retention nightly` without --enqueue runs the whole night in this process, on whatever database is
configured (the embedded SQLite by default), under the same per-account lock as the workers (worker/locks.py).
With --enqueue it only puts one task per account on the broker and prints the task ids; workers do the rest.
`worker` and `beat` check the broker before starting: exit 2 within seconds when it does not answer, unless
told to wait for it (RETENTION_BROKER_WAIT or --wait-broker, for containers started together).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import typer

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_REFUSED,
    accounts_to_run,
    open_db,
    parse_as_of,
    print_json,
    refuse,
)
from worker.logging import configure_logging

if TYPE_CHECKING:
    from worker.nightly import NightlyResult

# Celery and the nightly chain are imported inside the commands that use them (start-up time: README).

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
WAIT_BROKER = typer.Option(
    None,
    "--wait-broker",
    help="Seconds to wait for the broker at start (default RETENTION_BROKER_WAIT, 0: exit 2 at once).",
)
log = logging.getLogger(__name__)


def worker(
    ctx: typer.Context,
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Worker processes (default: the number of CPUs)."
    ),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l", help="DEBUG, INFO, WARNING, ERROR."),
    wait_broker: float | None = WAIT_BROKER,
) -> None:
    """Start a Celery worker (JSON logs). Other options are passed to `celery worker` as they are."""
    open_db().dispose()  # migrate first; then hold no connection a forked pool process could inherit
    configure_logging(loglevel)
    argv = ["worker", f"--loglevel={loglevel}"]
    if concurrency is not None:
        argv.append(f"--concurrency={concurrency}")
    _check_broker(wait_broker)
    from worker.celery_app import app as celery_app
    from worker.locks import uses_redis
    from worker.settings import get_settings

    where = "Redis" if uses_redis(get_settings()) else "the database (RETENTION_BROKER_URL is not set)"
    log.info(f"account locks live in {where}")
    celery_app.worker_main(argv + list(ctx.args))


def beat(
    ctx: typer.Context,
    loglevel: str = typer.Option("INFO", "--loglevel", "-l", help="DEBUG, INFO, WARNING, ERROR."),
    wait_broker: float | None = WAIT_BROKER,
) -> None:
    """Start the scheduler (one active at a time: start several, the others wait on a Redis lock)."""
    configure_logging(loglevel)
    _check_broker(wait_broker)
    from worker.celery_app import app as celery_app

    celery_app.start(["beat", f"--loglevel={loglevel}", *ctx.args])


def nightly(
    name: str | None = typer.Argument(None, help="Account name; default: every connected account."),
    enqueue: bool = typer.Option(False, "--enqueue", help="Queue one task per account for the workers"),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="YYYY-MM-DD (00:00 UTC); default now."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run the nightly job: sync -> rebuild -> metrics -> at-risk -> Slack, for one account or all."""
    from worker.celery_app import enqueue_accounts
    from worker.nightly import run_here, runs_json
    from worker.settings import get_settings

    settings = get_settings()
    when = parse_as_of(as_of) if as_of else None
    engine = open_db(settings)
    accounts = accounts_to_run(engine, name, "run")
    if enqueue:
        _check_broker()
        try:
            tasks = enqueue_accounts(settings, accounts, when)
        except Exception as exc:
            refuse(f"cannot queue the job ({type(exc).__name__}): is the broker at RETENTION_BROKER_URL up?")
        if as_json:
            print_json({"accounts": tasks})  # the envelope of every multi-account command
        else:
            for task in tasks:
                typer.echo(f"{task['account']}: queued as task {task['task_id']}")
        return
    results = run_here(engine, settings, accounts, when)
    ran = [r for r in results if not r.skipped]
    if as_json:
        print_json(runs_json(results))
    else:
        _print_runs(ran)
    for busy in (r for r in results if r.skipped):  # another run holds it: refused, after the others ran
        typer.echo(f"error: {busy.error}", err=True)
    if len(ran) < len(results):
        raise typer.Exit(EXIT_REFUSED)
    if any(not r.ok for r in results):
        raise typer.Exit(EXIT_FAILED)


def describe(result: NightlyResult) -> str:
    """One line per account: what ran, how long, where it stopped."""
    if result.skipped:
        return f"{result.account}: skipped: {result.error}"
    steps = ", ".join(f"{name} {step['seconds']:.1f}s" for name, step in result.steps.items() if step["ok"])
    if result.ok:
        return f"{result.account}: done ({steps})"
    done = f" (done: {steps})" if steps else ""
    return f"{result.account}: failed at {result.failed_step}: {result.error}{done}"


def _print_runs(results: list[NightlyResult]) -> None:
    """One line per account's night, and on stderr what the rates refresh warned of."""
    for result in results:
        typer.echo(describe(result))
        for note in rates_notes(result):
            typer.echo(f"{result.account}: warning: {note}", err=True)


def rates_notes(result: NightlyResult) -> list[str]:
    """The rates refresh's failure and stale-rates warning (the night carried on regardless)."""
    rates = result.steps.get("rebuild", {}).get("detail", {}).get("rates") or {}
    return [rates[key] for key in ("error", "warning") if rates.get(key)]


def _check_broker(wait: float | None = None) -> None:
    """Exit 2 with one line when the broker does not answer within `wait` (default RETENTION_BROKER_WAIT)."""
    from worker.celery_app import broker_unreachable
    from worker.settings import get_settings

    settings = get_settings()
    seconds = settings.retention_broker_wait if wait is None else max(0.0, wait)
    problem = broker_unreachable(settings.retention_broker_url, seconds)
    if problem:
        refuse(problem)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `retention` app."""
    app.command(context_settings=PASS_THROUGH)(worker)
    app.command(context_settings=PASS_THROUGH)(beat)
    app.command()(nightly)
