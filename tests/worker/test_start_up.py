"""`retention --help`, `accounts` and `status` start fast because they import only what they use (README:
start-up benchmark). Each runs in a fresh interpreter here, and the modules it loaded are listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from worker.cli.common import open_db

HEAVY = ("sqlalchemy", "sqlmodel", "alembic", "celery", "kombu", "stripe", "redis", "plotly", "jinja2")
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
    """The heavy packages a fresh `retention ARGS` imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
        timeout=60,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    names: list[str] = json.loads(line.removeprefix("LOADED "))
    return names


def test_help_and_version_import_nothing_heavy() -> None:
    assert loaded(["--help"]) == []
    assert loaded(["--version"]) == []
    assert loaded(["sync", "--help"]) == []
    assert loaded(["watch", "--help"]) == []


@pytest.mark.parametrize("command", [["accounts"], ["status"]])
def test_accounts_and_status_load_the_database_layer_only(command: list[str]) -> None:
    open_db()  # migrated already, as after `retention connect`: the command itself runs no migration
    assert loaded(command) == ["sqlalchemy", "sqlmodel"]
