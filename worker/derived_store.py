"""Stored derived figures: what the report computes from the ledger, kept while the ledger stays the same.

The report's trend (T12M ratios at twelve month starts) and cohort grid (sums over the month-start snapshots),
and the metrics' month-by-month movements (from the same month starts), are functions of the account's ledger
and snapshots alone, and most nights leave every figure of a past month as it was. Each figure is kept per
(account, kind, key) with the ledger's generation it was computed at: the account's verdict epoch
(worker/risk_store.py VerdictEpoch), which every rebuild that recomputed any customer moves in its own
transaction (a full rebuild, also the one a change of rates or reporting currency forces, forgets everything;
an incremental one forgets the customers it recomputed), and a meter refresh too. Nothing else writes the
ledger or the snapshots of a day already stored (docs/at-risk.md, Derived figures), so a figure stored at the
current epoch is what computing it again would give; one stored at another epoch is never read, and goes at
the next store.

Writes take the same care as the stored verdicts: figures computed from rows read before a forget are not
stored (`store_figures` returns False), so a figure read back is never older than its epoch. The epoch is
read after the figures, so a forget between the two reads does not let the older figures through either.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, and_, delete, not_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from metrics.tables import table_of
from worker.risk_store import VE, Forgotten, epoch

# Part of every key: raise it when the way a stored figure is computed changes, so none is read back.
FORMAT = 1
TREND = "trend"  # T12M ratios of one day (key: definitions version and day)
COHORTS = "cohorts"  # the cohort grid's sums up to one month (key: the month)
MOVEMENTS = "movements"  # the metrics' month-by-month movements (key: definitions version)
AT_RISK = "at_risk"  # the ranked at-risk list of one instant (key: the verdicts' basis and the instant)


class DerivedFigure(SQLModel, table=True):
    """One derived figure of an account, a JSON object or array (SQLite would read a bare number back as a
    number, not as JSON text), with the epoch of the history it was computed from."""

    __tablename__ = "derived_figure"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    kind: str = Field(primary_key=True, max_length=40)
    key: str = Field(primary_key=True, max_length=200)
    epoch: int = Field(sa_column=Column(BigInteger, nullable=False))
    value: Any = Field(sa_column=Column(JSON, nullable=False))


DF = table_of(DerivedFigure)


def figures(conn: Connection, account_id: int, kind: str) -> tuple[int, dict[str, Any]]:
    """The account's current epoch and the figures of `kind` stored at it (key -> value).

    The figures are read first and kept only when their epoch is the one read after them: a rebuild that
    committed in between (and moved the epoch) leaves nothing older than the epoch returned."""
    rows = conn.execute(
        select(DF.c.key, DF.c.epoch, DF.c.value).where(DF.c.account_id == account_id, DF.c.kind == kind)
    ).all()
    now = epoch(conn, account_id)
    return now, {key: value for key, at, value in rows if at == now}


def holds_epoch(conn: Connection, account_id: int, since: int) -> bool:
    """Whether the account's epoch is still `since`, read so that no forget can commit unseen before the
    caller's transaction ends (the order of risk_store's stores): on PostgreSQL the epoch row is made if
    missing and locked (waiting for a forget in progress, then reading what it committed); on SQLite the
    caller must have written first, which holds the database's write lock, so the epoch read is the newest.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    made = dialect.insert(VE).values(account_id=account_id, epoch=0)
    conn.execute(made.on_conflict_do_nothing(index_elements=["account_id"]))
    return epoch(conn, account_id, lock=True) == since


def _write(
    conn: Connection,
    account_id: int,
    kind: str,
    since: int,
    values: Mapping[str, Any],
    keep: Collection[str],
) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    rows = [
        {"account_id": account_id, "kind": kind, "key": key, "epoch": since, "value": value}
        for key, value in values.items()
    ]
    stmt = dialect.insert(DF)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["account_id", "kind", "key"],
            set_={"epoch": stmt.excluded.epoch, "value": stmt.excluded.value},
        ),
        rows,
    )
    # prune: figures of other epochs are never read again; of this kind, only the keys asked for last
    kept = set(keep) | set(values)
    conn.execute(
        delete(DF).where(
            DF.c.account_id == account_id,
            or_(DF.c.epoch != since, and_(DF.c.kind == kind, not_(DF.c.key.in_(sorted(kept))))),
        )
    )


def store_figures(
    engine: Engine,
    account_id: int,
    kind: str,
    since: int,
    values: Mapping[str, Any],
    keep: Collection[str] = (),
) -> bool:
    """Store (or replace) figures of `kind` computed from rows read at epoch `since`, and drop the account's
    figures of other epochs and those of `kind` whose key is neither stored now nor in `keep` (the keys
    the caller read back), so the table holds one report's figures per account.

    Returns False, storing nothing, when the epoch moved since `since`: the figures may rest on a history a
    rebuild has replaced."""
    if not values:
        return True
    try:
        with engine.begin() as conn:
            if conn.dialect.name != "postgresql":
                _write(conn, account_id, kind, since, values, keep)
            if not holds_epoch(conn, account_id, since):
                raise Forgotten
            if conn.dialect.name == "postgresql":
                _write(conn, account_id, kind, since, values, keep)
    except Forgotten:
        return False
    return True
