"""The SQL a repository sends through metrics.tables.raw_rows, recorded for EXPLAIN in plan tests."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from sqlalchemy.engine import Connection

from metrics import tables


def capture_sql(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[str]:
    """Every statement `module` runs through raw_rows from now on, compiled as sent (literals inline)."""
    sent: list[str] = []

    def recording(conn: Connection, query: Any, *args: Any) -> Any:
        sent.append(str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
        return tables.raw_rows(conn, query, *args)

    monkeypatch.setattr(module, "raw_rows", recording)
    return sent
