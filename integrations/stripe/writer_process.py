"""A full sync's SQLite writes in a process of their own, beside the fetchers and the parsing.

A full sync is CPU-bound, and in one process its threads take turns at the interpreter's lock: the fetchers'
HTTP and JSON, the writer's rows and statement parameters, and SQLite's own work, which releases the lock only
for each row's step (microseconds) and then waits to get it back. At 100,000 customers SQLite's inserts,
index pages and commits were about a third of the sync's CPU. So the sync keeps parsing each page and building
each statement's parameters (`store.py`) and hands the statements to this process, which only runs them on a
SQLite connection of its own: the two halves run side by side on two cores. Measured in docs/benchmarks.md.

PostgreSQL gets no such process: its writes already run in the server's processes.

The parent side, `SeparateWriter`, offers what the sync's writes use of a SQLAlchemy connection (`dialect`,
`execute`, `exec_driver_sql`): Core statements are compiled to the driver's SQL and parameters here, with the
engine's dialect and its type processing (JSON encoded by the engine's serializer), so both paths write the
same values. One transaction is open at a time; `commit` sends it and returns at once, having first waited for
the one before it, so the parent parses the next pages while the child commits. A failure in the child (a
constraint, a full disk) voids its transaction and comes back on its commit (by the next commit or `settle`)
as the SQLAlchemy error the same statement raises in one process; a child that is gone, as WriterFailed.
What is committed stays consistent with the checkpoint committed with it.

The child is `python -m integrations.stripe.writer_child`, started with the interpreter and import path of
the parent (a Celery worker's pool processes may not fork children of their own through `multiprocessing`).
Messages are marshal-encoded tuples, each preceded by its length, on the child's stdin; replies come on its
stdout. No secret crosses: the child gets the database's file path and the connection's settings, and no
environment variable but its import path (never a Stripe key, nor the key that decrypts them). If the
parent dies, the child reads the end of its input and rolls back.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from integrations.stripe.writer_child import PRAGMAS, Message, receive, send

MODULE = "integrations.stripe.writer_child"
BUFFER = 1 << 20  # what the parent gathers before handing it to the sending thread
QUEUED = 32  # buffers waiting to be sent, at most (SeparateWriter)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux's number; Python names it from 3.10 on


@dataclass(frozen=True)
class WriterUsage:
    """What the child used, as it reported when it closed: its peak resident memory (None where the system
    does not say) and CPU seconds. Benchmarks add them to the sync's own."""

    peak_mb: float | None
    cpu: float


class WriterFailed(RuntimeError):
    """The separate writer process is gone (killed, or its pipe broken)."""


def _failure(kind: str, message: str) -> Exception:
    """What the child reported, as the exception writing in the sync's own process would have raised: SQLite's
    errors as SQLAlchemy's (an `OperationalError` such as a locked database is then retried as transient,
    the same as before), anything else as WriterFailed."""
    found = getattr(sqlite3, kind, None)
    if isinstance(found, type) and issubclass(found, sqlite3.Error):
        error = DBAPIError.instance(None, None, found(message), sqlite3.Error)
        assert isinstance(error, Exception)
        return error
    return WriterFailed(f"storing the sync's pages failed: {kind}: {message}")


def usable(engine: Engine) -> bool:
    """A separate writer needs a SQLite database in a file that another process can open."""
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


def _widen(pipe: IO[bytes]) -> None:
    """Let the pipe hold more than its 64 KB, which is less than one page's statement: with a full pipe the
    parent waits for the child to read, and the two would take turns instead of working side by side. Linux
    allows an unprivileged process up to /proc/sys/fs/pipe-max-size (1 MB by default); elsewhere, or if
    refused, the pipe stays as it is."""
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, limit)
    except (OSError, ValueError, AttributeError):
        pass


def _settings(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(name, int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())) for name in PRAGMAS]


def driver_sql(statement: Executable, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    """A Core statement as the driver's SQL text and positional parameters, each processed by its column's
    type as SQLAlchemy would when executing it (a JSON value encoded, a boolean as 0 or 1); `IN` lists are
    rendered as one placeholder per value."""
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
    values = compiled.construct_params()
    params: list[Any] = []
    for name in compiled.positiontup:
        bind = compiled.binds.get(name)
        process = bind.type.bind_processor(dialect) if bind is not None else None
        params.append(process(values[name]) if process is not None else values[name])
    return str(compiled), tuple(params)


class SeparateWriter:
    """The parent's handle on the child process: one open transaction at a time, committed without waiting
    for it (only for the one before it).

    Messages gather in a buffer; full buffers go to a thread of their own that writes them to the pipe. A
    write to a pipe gives up the interpreter's lock, which the writing thread must then win back from the
    fetchers (up to the interpreter's 5 ms switch interval), and blocks while the child is busy committing:
    written by the sync's own thread, a write per statement kept it waiting for a quarter of a
    100,000-customer sync. At most QUEUED buffers wait, so the parent's memory stays bounded when the child
    falls behind."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        # Our interpreter, and the folder holding the `integrations` package as its only import path beyond
        # the standard library: the child needs nothing else, so it gets no other environment variable (the
        # worker's hold the key that decrypts the Stripe keys).
        root = str(Path(__file__).resolve().parents[2])
        self._child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"PYTHONPATH": root},
        )
        assert self._child.stdin is not None and self._child.stdout is not None
        self._to, self._from = self._child.stdin, self._child.stdout
        _widen(self._to)
        self._buffer = io.BytesIO()
        self._outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED)
        self._broken: OSError | None = None  # the sending thread's failure to write
        self._sender = threading.Thread(target=self._send_all, name="stripe-sync-writer-pipe", daemon=True)
        self._sender.start()
        self._unacknowledged: deque[Callable[[], None]] = deque()  # commits sent, and what to do once done
        self.usage: WriterUsage | None = None  # the child's, once it has closed
        self._post(("open", str(engine.url.database), _settings(engine)))

    def _post(self, message: Message) -> None:
        send(self._buffer, message)
        if self._buffer.tell() >= BUFFER:
            self._hand_over()

    def _hand_over(self) -> None:
        """Queue the buffer for the sending thread."""
        if self._broken is not None:
            raise WriterFailed(f"the sync's writer process is gone ({self._exit()})") from self._broken
        if self._buffer.tell():
            self._outbox.put(self._buffer.getvalue())
            self._buffer = io.BytesIO()

    def _send_all(self) -> None:
        fd = self._to.fileno()
        while (chunk := self._outbox.get()) is not None:
            if self._broken is not None:
                continue  # keep emptying the queue, so the parent never blocks on it
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                self._broken = exc

    def _exit(self) -> str:
        code = self._child.poll()
        return "still running" if code is None else f"exit status {code}"

    # -- what the sync's writes use of a connection -------------------------------------------------------
    def execute(self, statement: Executable) -> None:
        sql, params = driver_sql(statement, self.dialect)
        self._post(("run", sql, params))

    def exec_driver_sql(self, statement: str, parameters: Any = None) -> None:
        """A list of parameter tuples runs as executemany, a tuple (or nothing) as one execution."""
        params = parameters if isinstance(parameters, list) else tuple(parameters or ())
        self._post(("run", statement, params))

    # -- transactions -------------------------------------------------------------------------------------
    def commit(self, then: Callable[[], None] = lambda: None) -> None:
        """Commit what was sent since the last commit; `then` runs once the child has committed it (by the
        next commit, `settle` or `close`). Waits for the commit before, so one is in flight at most."""
        self.settle()
        self._post(("commit",))
        self._hand_over()
        self._unacknowledged.append(then)

    def settle(self) -> None:
        """Wait until every commit sent is done; raises WriterFailed for the first that failed."""
        self._hand_over()
        while self._unacknowledged:
            reply = receive(self._from)
            if reply is None:
                raise WriterFailed(f"the sync's writer process ended unexpectedly ({self._exit()})")
            done = self._unacknowledged.popleft()
            if reply[0] == "error":
                raise _failure(reply[1], reply[2])
            done()

    def rollback(self) -> None:
        """Drop what was sent since the last commit."""
        self._post(("rollback",))

    def close(self) -> None:
        """Let the child finish what it was sent (rolling back an uncommitted rest) and end; never raises, as
        it runs when the sync is done or already failing (`settle` reports a failed commit)."""
        with contextlib.suppress(WriterFailed):  # the sending thread's failure: the child is gone already
            self._post(("close",))
            self._hand_over()
        self._outbox.put(None)
        self._sender.join()
        self._to.close()
        while (reply := receive(self._from)) is not None:  # any commit's answer, then the child's last
            if reply[0] == "closed":
                self.usage = WriterUsage(peak_mb=None if reply[1] is None else reply[1] / 1024, cpu=reply[2])
        try:
            self._child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._from.close()
        self._unacknowledged.clear()
