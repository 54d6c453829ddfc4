"""The database URL read with the standard library means what SQLAlchemy reads in it (worker/db_target.py):
the settings check it and `accounts` / `status` connect with it without importing SQLAlchemy."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from worker.db_target import parse_database_url

URLS = [
    "sqlite:///relative.db",
    "sqlite:////abs/path/retention.db",
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite:///x.db?mode=ro&uri=true",
    "postgresql://alice@db.example/retention",
    "postgresql://alice:p%40ss%3Aw0rd@db.example:6543/retention",
    "postgresql+psycopg://u:pw@[::1]:5432/db?sslmode=require&application_name=rt",
    "postgresql://127.0.0.1/test",
    "postgresql:///test?host=/var/run/postgresql",
    "postgresql://u@h/db?host=a&host=b",
    "postgresql+psycopg2://u@h/d%20b",
]


@pytest.mark.parametrize("url", URLS)
def test_the_parts_are_sqlalchemys(url: str) -> None:
    ours, theirs = parse_database_url(url), make_url(url)
    assert (ours.drivername, ours.username, ours.password, ours.host, ours.port, ours.database) == (
        theirs.drivername,
        theirs.username,
        theirs.password,
        theirs.host,
        theirs.port,
        theirs.database,
    )
    assert ours.query == {k: list(v) if isinstance(v, tuple) else v for k, v in theirs.query.items()}
    assert ours.backend == theirs.get_backend_name()


@pytest.mark.parametrize("url", ["", "retention.db", "://x", "postgres ql://h/db", "/var/lib/retention.db"])
def test_what_sqlalchemy_refuses_is_refused(url: str) -> None:
    with pytest.raises(ArgumentError):
        make_url(url)
    with pytest.raises(ValueError, match="not a database URL"):
        parse_database_url(url)


def test_a_port_that_is_not_a_number_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError) as refused:
        parse_database_url("postgresql://u:secret@h:port/db")
    assert "secret" not in str(refused.value) and "port" in str(refused.value)


def test_the_password_is_not_in_the_repr() -> None:
    assert "secret" not in repr(parse_database_url("postgresql://u:secret@h/db"))
