"""The child side of a full sync's separate writer (writer_process.py has the why): it runs the SQLite
statements its parent sends, on a connection of its own, and answers each commit.

Standard library only, so the process starts in a few tens of milliseconds and holds little beyond SQLite's
page cache. Messages are marshal-encoded tuples, each preceded by its length: `("open", path, settings)`,
`("run", sql, parameters)` (a list of tuples runs as executemany), `("commit",)`, answered `("ok",)` or
`("error", exception class, message)`, `("rollback",)` and `("close",)`, answered with this process's peak
memory and CPU time. A failed statement voids the rest of its transaction, which its commit reports. The end
of the input (the parent gone) rolls back and ends.
"""

from __future__ import annotations

import marshal
import os
import sqlite3
import struct
import sys
from typing import IO, Any

# The connection settings the parent reads from its engine and the child sets again (journal mode and page
# size belong to the database file itself).
PRAGMAS = ("synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint", "cache_size")
LENGTH = struct.Struct("<I")

Message = tuple[Any, ...]


def send(stream: IO[bytes], message: Message) -> None:
    body = marshal.dumps(message)
    stream.write(LENGTH.pack(len(body)))
    stream.write(body)


def receive(stream: IO[bytes]) -> Message | None:
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None  # the other side is gone
    (size,) = LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    message = marshal.loads(body)  # noqa: S302 - written by our own parent or child, over a pipe
    assert isinstance(message, tuple)
    return message


class _Store:
    """The child's state: its connection, whether a transaction is open, and the failure that voids the rest
    of the transaction (reported at its commit)."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.open = False
        self.failed: tuple[str, str] | None = None  # the exception's class name and message

    def connect(self, path: str, settings: list[tuple[str, int]]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for name, value in settings:
            if name in PRAGMAS:  # names from our own list only
                self.conn.execute(f"PRAGMA {name}={int(value)}")

    def run(self, sql: str, params: list[tuple[Any, ...]] | tuple[Any, ...]) -> None:
        if self.failed is not None:
            return  # the transaction is void: its commit reports why
        try:
            assert self.conn is not None, "no database opened"
            if not self.open:
                self.conn.execute("BEGIN")
                self.open = True
            if isinstance(params, list):
                self.conn.executemany(sql, params)
            else:
                self.conn.execute(sql, params)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent, named
            self.failed = (type(exc).__name__, str(exc))
            self.rollback()

    def commit(self) -> Message:
        if self.failed is None and self.open and self.conn is not None:
            try:
                self.conn.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001
                self.failed = (type(exc).__name__, str(exc))
                self.rollback()
        self.open = False
        failed, self.failed = self.failed, None
        return ("ok",) if failed is None else ("error", *failed)

    def rollback(self) -> None:
        if self.open and self.conn is not None:
            self.conn.rollback()
        self.open = False

    def end(self) -> None:
        """Roll back what was not committed and close the connection."""
        self.rollback()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def serve(incoming: IO[bytes], outgoing: IO[bytes]) -> None:
    """The child's loop: run what comes until `close` or the end of the input (the parent gone)."""
    store = _Store()
    while (message := receive(incoming)) is not None:
        kind = message[0]
        if kind == "run":
            store.run(message[1], message[2])
        elif kind == "commit":
            send(outgoing, store.commit())
            outgoing.flush()
        elif kind == "rollback":
            store.rollback()
            store.failed = None
        elif kind == "open":
            try:
                store.connect(message[1], message[2])
            except Exception as exc:  # noqa: BLE001
                store.failed = (type(exc).__name__, f"opening {message[1]}: {exc}")
        elif kind == "close":
            store.end()
            send(outgoing, ("closed", peak_kb(), sum(os.times()[:2])))
            outgoing.flush()
            return
    store.end()


def peak_kb() -> int | None:
    """This process's peak resident memory since it started (Linux; None elsewhere). VmHWM, not getrusage's
    maxrss, which also keeps the parent's size from before the exec that started this program."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


if __name__ == "__main__":
    # stdout carries the replies: anything else printed goes to stderr instead
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
