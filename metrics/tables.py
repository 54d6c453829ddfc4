"""The one way any layer reaches a stored table as SQLAlchemy Core.

SQLModel classes carry their Core `Table` as `__table__`, which mypy cannot see; every module that builds a
statement over a stored table asks here instead of reaching for the attribute itself.
"""

from __future__ import annotations

from sqlalchemy import Table


def table_of(model: type) -> Table:
    """The Core table behind a SQLModel class."""
    table: Table = getattr(model, "__table__")  # noqa: B009
    return table
