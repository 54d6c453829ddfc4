"""Where the database is, with the standard library only: the URL's parts, the SQLite file's privacy and the
schema's newest migration id.

Both ways of opening the database share this module: the SQLAlchemy engine (worker/db.py) and the plain
DB-API connection `accounts` and `status` read through (worker/fast_db.py), which must not import SQLAlchemy
(README: start-up time). The settings check RETENTION_DATABASE_URL with `parse_database_url` for the same
reason. Its parser is SQLAlchemy's own pattern (`sqlalchemy.engine.url._parse_url`), so a URL means the same
thing on both paths; tests/worker/test_db_target.py compares the two.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote

MIGRATIONS = Path(__file__).parent / "migrations"

# The files SQLite keeps beside a database (write-ahead log, shared memory) and our migration lock.
SQLITE_COMPANIONS = ("-wal", "-shm", ".migrate-lock")

# SQLAlchemy's URL pattern, unchanged: `dialect+driver://user:password@host:port/database?query`.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
        """,
    re.X,
)


@dataclass(frozen=True)
class DatabaseUrl:
    """A database URL's parts, decoded as SQLAlchemy decodes them (`%40` in a password is `@`)."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: dict[str, str | list[str]] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        """`postgresql` for `postgresql+psycopg`: the part of the driver name left of the plus sign."""
        return self.drivername.split("+")[0]


def parse_database_url(url: str) -> DatabaseUrl:
    """The URL's parts; ValueError (never naming the URL, which may hold a password) when it is not one."""
    found = _URL.match(url)
    if found is None:
        raise ValueError("not a database URL")
    parts = found.groupdict()
    query: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(parts["query"] or ""):
        if key in query:
            previous = query[key]
            query[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            query[key] = value
    port = parts["port"]
    if port and not port.isdigit():
        raise ValueError("the port is not a number")
    return DatabaseUrl(
        drivername=parts["name"],
        username=None if parts["username"] is None else unquote(parts["username"]),
        password=None if parts["password"] is None else unquote(parts["password"]),
        host=parts["ipv4host"] or parts["ipv6host"],
        port=int(port) if port else None,
        database=None if parts["database"] is None else unquote(parts["database"]),
        query=query,
    )


def private_sqlite_files(database: str | None) -> None:
    """Make a file-backed SQLite database and its companions readable by their owner only (0600).

    The database holds billing data. SQLite creates the -wal and -shm files with the database file's own
    mode, so creating the database 0600 before SQLite opens it covers them; files left looser by an older
    install are tightened here. In-memory databases and folders that do not exist are left to SQLite.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    tighten_sqlite_files(database)


def tighten_sqlite_files(database: str) -> None:
    """Take group and other access away from an existing database file and its companions we own."""
    for file in (Path(database), *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            info = file.stat()
            if info.st_mode & 0o077 and info.st_uid == os.getuid():
                file.chmod(0o600)


# The one query that tells which migration a database is at (worker/db.py `at_head`, worker/fast_db.py).
VERSION_QUERY = "SELECT version_num FROM alembic_version"

_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.M)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's id, read from the version files' text (importing Alembic and the models to ask
    it costs more than most commands' own work); None when the files do not name exactly one head."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found:
            revisions.add(found.group(1))
        parents.update(_DOWN.findall(source))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_head(versions: list[str]) -> bool:
    """Whether the rows of `alembic_version` say the database is at the newest migration."""
    head = head_revision()
    return head is not None and versions == [head]
