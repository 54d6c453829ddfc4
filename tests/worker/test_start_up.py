"""`retention --help`, `accounts` and `status` start fast because they import only what they use (README:
start-up benchmark). Each runs in a fresh interpreter here, and the modules it loaded are listed.

`accounts` and `status` read the database without SQLAlchemy or SQLModel (worker/fast_db.py) when its schema
is current, and leave it to the engine (which migrates) when it is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.support.stripe_rows import make_account
from worker.cli.common import open_db
from worker.settings import get_settings

HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "celery",
    "kombu",
    "stripe",
    "redis",
    "plotly",
    "jinja2",
    "psycopg",
    "cryptography",
    "platformdirs",
    "pydantic_settings",
    "rich._emoji_codes",  # rich's emoji table, loaded to measure a table's cells unless emoji is off
)
PROBE = """
import json, sys
from worker.cli.main import main
heavy = json.loads(sys.argv[2])
sys.argv = ["retention", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("LOADED " + json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def loaded(args: list[str]) -> list[str]:
    """The heavy packages a fresh `retention ARGS` imported; the command must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
        timeout=60,
    )
    assert "error" not in done.stderr, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    names: list[str] = json.loads(line.removeprefix("LOADED "))
    return names


def test_help_and_version_import_nothing_heavy() -> None:
    assert loaded(["--help"]) == []
    assert loaded(["--version"]) == []
    assert loaded(["sync", "--help"]) == []
    assert loaded(["watch", "--help"]) == []


COMMANDS = [["accounts"], ["accounts", "--json"], ["status"], ["status", "--json"]]


@pytest.mark.parametrize("command", COMMANDS)
def test_accounts_and_status_read_sqlite_without_the_database_layer(command: list[str]) -> None:
    make_account(open_db())  # migrated already, as after `retention connect`
    assert loaded(command) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_on_postgresql_they_load_the_driver_only(
    command: list[str], pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_engine.url.render_as_string(hide_password=False))
    make_account(pg_engine)
    assert loaded(command) == ["psycopg"]


def test_a_database_to_migrate_is_left_to_the_engine() -> None:
    """No database yet (a fresh home): `accounts` creates and migrates it through the engine, as before."""
    database = Path(get_settings().database_url.removeprefix("sqlite:///"))
    assert not database.exists()
    assert loaded(["accounts"]) == ["alembic", "sqlalchemy", "sqlmodel"]
    assert database.exists()
    assert loaded(["accounts"]) == []  # now at the newest schema
