"""The schema is created once even when several processes or threads start together on a fresh database.

A worker, beat and a command commonly start at the same moment after a deploy; each calls `ensure_schema`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import worker.tables  # noqa: F401  (the whole schema)
from tests.support.pg import create_database, drop_database
from worker.db import ensure_schema, get_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database nobody has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    request.getfixturevalue("pg_database_url")  # fails in CI / skips elsewhere when PostgreSQL is down
    url = create_database("rt_fresh")
    yield url
    drop_database(url)


def _assert_migrated_once(url: str) -> None:
    engine = get_engine(url)
    assert set(inspect(engine).get_table_names()) >= {t.name for t in SQLModel.metadata.sorted_tables}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_threads_starting_together_migrate_once(fresh_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            ensure_schema(fresh_url)
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    _assert_migrated_once(fresh_url)


def test_processes_starting_together_migrate_once(fresh_url: str) -> None:
    code = "import sys; from worker.db import ensure_schema; ensure_schema(sys.argv[1])"
    # Without the locks in ensure_schema two of three such processes fail (checked on both databases).
    procs = [
        subprocess.Popen([sys.executable, "-c", code, fresh_url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        if p.stderr:
            p.stderr.close()
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-500:] for _, err in results]
    _assert_migrated_once(fresh_url)
