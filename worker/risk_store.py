"""Stored verdicts: each customer's at-risk assessment and backtest flags, kept with how long they hold.

A verdict is a pure function of a customer's stored history and the instant (metrics/at_risk.py), so it is
kept per (account, customer) with the interval over which it cannot change while that history stays the same
(`judged_at` .. `valid_until`, see `metrics.at_risk.next_change`) and the `basis` it was judged under (the
thresholds, the reporting currency, the catalog, whether the stored state was current). A later run at an
instant inside the interval, under the same basis, reads the verdict back instead of loading the customer's
invoices, subscriptions, lines and usage again (docs/at-risk.md, Stored verdicts).

The rebuild forgets the verdicts of the customers whose ledger it recomputed (`forget`, in its transaction),
a meter-usage refresh those whose usage changed; changes a sync noted but no rebuild read yet are excluded by
the reader (integrations/stripe/changes.py). This module only stores and reads: the judging is in
worker/risk.py and worker/backtest.py. Kept free of those imports so the rebuild can call `forget` without
a cycle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Column, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from metrics.at_risk import RiskAssessment, Signal
from metrics.backtest import Contribution
from metrics.tables import raw_rows, table_of

FOREVER = 2**62  # valid_until of a verdict no passage of time can change
WRITE_CHUNK = 1000  # rows per upsert statement


class RiskVerdict(SQLModel, table=True):
    """One customer's present at-risk assessment (None: not at risk), valid over [judged_at, valid_until),
    and maybe the one that follows, valid over [valid_until, then_until) under `then_basis` (judged ahead)."""

    __tablename__ = "risk_verdict"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(primary_key=True, max_length=255)
    basis: str = Field(max_length=64)  # basis_key(): thresholds, currency, catalog, current
    judged_at: int = Field(sa_column=Column(BigInteger, nullable=False))
    valid_until: int = Field(sa_column=Column(BigInteger, nullable=False))
    assessment: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    then_basis: str | None = Field(default=None, max_length=64)  # None: nothing judged ahead
    then_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    then_assessment: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class BacktestVerdict(SQLModel, table=True):
    """One customer as the backtest sees it: its signal codes at past instants, as intervals
    ([[from, until, codes or null], ...]), and its name and MRR over time ([instants, values]) for the
    outcomes. The backtest's points move by a day each night; a point inside a kept interval is read back."""

    __tablename__ = "backtest_verdict"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    customer_id: str = Field(primary_key=True, max_length=255)
    basis: str = Field(max_length=64)
    name: str
    mrr: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    spans: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # its contribution to the backtest (metrics.backtest.Contribution), the same on the as-of days
    # [held_from, held_until) (day ordinals): bit k of `paying` for point k, flags and churns when it has any
    held_from: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    held_until: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    paying: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    outcomes: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class VerdictEpoch(SQLModel, table=True):
    """How many times the account's verdicts were forgotten: a run that judged customers from rows read before
    a `forget` stores nothing (its verdicts may rest on the history that was just replaced)."""

    __tablename__ = "verdict_epoch"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    epoch: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


RV, BV, VE = table_of(RiskVerdict), table_of(BacktestVerdict), table_of(VerdictEpoch)


class Forgotten(Exception):
    """Verdicts were forgotten while they were judged: the transaction storing them is rolled back."""


def epoch(conn: Connection, account_id: int, lock: bool = False) -> int:
    """The account's forget count (0 before any); `lock` holds its row to the end of the transaction."""
    query = select(VE.c.epoch).where(VE.c.account_id == account_id)
    found = conn.execute(query.with_for_update() if lock else query).scalar()
    return int(found or 0)


def _store_if_unchanged(conn: Connection, account_id: int, since: int, write: Callable[[], None]) -> None:
    """Upsert verdict rows unless verdicts were forgotten since epoch `since` (raises Forgotten; the caller's
    transaction then stores nothing).

    The order avoids both a lost forget and a deadlock with a rebuild (which moves the epoch, then deletes
    verdict rows): on PostgreSQL the epoch row is locked first (waiting for a forget in progress, then reading
    what it committed; the row is made if missing, an insert that also waits for one inserting it); on SQLite
    the rows are written first, which takes the database's write lock, so the epoch read after is the newest.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    if conn.dialect.name != "postgresql":
        write()
    made = dialect.insert(VE).values(account_id=account_id, epoch=0)
    conn.execute(made.on_conflict_do_nothing(index_elements=["account_id"]))
    if epoch(conn, account_id, lock=True) != since:
        raise Forgotten
    if conn.dialect.name == "postgresql":
        write()


def basis_key(*parts: object) -> str:
    """A short stable digest of what every verdict depends on besides the customer's own history."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


# -- present assessments ---------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredVerdict:
    """A verdict over [judged_at, valid_until) under `basis`; `then`: the one judged ahead for the instant it
    ends (its judged_at is this valid_until), or None."""

    basis: str
    judged_at: int
    valid_until: int
    assessment: RiskAssessment | None
    then: StoredVerdict | None = None

    def holds(self, basis: str, at: int) -> bool:
        return self.basis == basis and self.judged_at <= at < self.valid_until


def to_json(a: RiskAssessment) -> dict[str, Any]:
    return {
        "customer_id": a.customer_id,
        "name": a.name,
        "mrr": a.mrr,
        "currency": a.currency,
        "signals": [[s.code, s.detail, s.weight] for s in a.signals],
        "renewal_date": a.renewal_date.isoformat() if a.renewal_date else None,
        "score": a.score,
    }


def from_json(d: Mapping[str, Any]) -> RiskAssessment:
    return RiskAssessment(
        d["customer_id"],
        d["name"],
        int(d["mrr"]),
        d["currency"],
        tuple(Signal(code, detail, float(weight)) for code, detail, weight in d["signals"]),
        date.fromisoformat(d["renewal_date"]) if d["renewal_date"] else None,
        float(d["score"]),
    )


def verdicts(conn: Connection, account_id: int) -> dict[str, StoredVerdict]:
    """Every stored present verdict of the account (one small row per customer; most hold no assessment)."""
    columns = ("customer_id", "basis", "judged_at", "valid_until", "assessment")
    ahead = ("then_basis", "then_until", "then_assessment")
    query = select(*(RV.c[c] for c in columns + ahead)).where(RV.c.account_id == account_id)
    out = {}
    for cid, basis, judged, until, a, then_basis, then_until, then_a in raw_rows(conn, query):
        then = None  # no SQLAlchemy Row for each customer
        if then_basis is not None and then_until is not None:
            then = StoredVerdict(then_basis, until, then_until, _assessment(then_a))
        out[cid] = StoredVerdict(basis, judged, until, _assessment(a), then)
    return out


def _assessment(value: Any) -> RiskAssessment | None:
    found = _json(value)
    return from_json(found) if found else None


def _json(value: Any) -> Any:
    """A JSON column's value as read by raw_rows: SQLite keeps the JSON text, psycopg decodes it itself."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _upsert(conn: Connection, table: Any, rows: list[dict[str, Any]], keep: list[str]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for n in range(0, len(rows), WRITE_CHUNK):
        stmt = dialect.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "customer_id"], set_={c: stmt.excluded[c] for c in keep}
        )
        conn.execute(stmt, rows[n : n + WRITE_CHUNK])


def save_verdicts(
    conn: Connection, account_id: int, found: Iterable[tuple[str, StoredVerdict]], since: int
) -> None:
    """Store (or replace) these customers' present verdicts, judged from rows read at epoch `since`
    (raises Forgotten, nothing stored, when verdicts were forgotten since)."""
    rows = [
        {
            "account_id": account_id,
            "customer_id": cid,
            "basis": v.basis,
            "judged_at": v.judged_at,
            "valid_until": v.valid_until,
            "assessment": to_json(v.assessment) if v.assessment is not None else None,
            "then_basis": v.then.basis if v.then else None,
            "then_until": v.then.valid_until if v.then else None,
            "then_assessment": to_json(v.then.assessment) if v.then and v.then.assessment else None,
        }
        for cid, v in found
    ]
    keep = ["basis", "judged_at", "valid_until", "assessment", "then_basis", "then_until", "then_assessment"]
    _store_if_unchanged(conn, account_id, since, lambda: _upsert(conn, RV, rows, keep))


# -- backtest flags --------------------------------------------------------------------------------
Span = tuple[int, int, tuple[str, ...] | None]  # [from, until): the codes (None: not flagged)


@dataclass
class Held:
    """A kept contribution and the as-of days [since, until) (ordinals) it holds for."""

    since: int
    until: int
    contribution: Contribution


@dataclass
class KeptCustomer:
    """What the backtest keeps of a customer (BacktestVerdict)."""

    basis: str
    name: str
    instants: list[int]
    values: list[int]
    spans: list[Span]
    held: Held | None = None


def _outcomes(c: Contribution) -> dict[str, Any] | None:
    if not c.flags and not c.churns:
        return None
    return {
        "flags": [[k, list(codes), hit] for k, codes, hit in c.flags],
        "churns": [list(x) for x in c.churns],
    }


def _contribution(paying: int, outcomes: Mapping[str, Any] | None) -> Contribution:
    if outcomes is None:
        return Contribution(paying, (), ())
    flags = tuple((int(k), tuple(codes), bool(hit)) for k, codes, hit in outcomes["flags"])
    churns = tuple((int(t), int(w), None if k is None else int(k)) for t, w, k in outcomes["churns"])
    return Contribution(paying, flags, churns)


def held_contributions(
    conn: Connection, account_id: int, basis: str, day: int
) -> Iterator[tuple[str, str, Contribution]]:
    """(customer, name, contribution) of every kept customer whose contribution holds on the as-of day
    `day` (an ordinal) under `basis`: the backtest adds them without reading anything else of them."""
    query = select(BV.c.customer_id, BV.c.name, BV.c.paying, BV.c.outcomes).where(
        BV.c.account_id == account_id,
        BV.c.basis == basis,
        BV.c.held_from <= day,
        BV.c.held_until > day,
    )
    for cid, name, paying, outcomes in raw_rows(conn, query, stream=True):  # a row per paying customer
        yield cid, name, _contribution(int(paying), _json(outcomes))


def kept_customers(conn: Connection, account_id: int, customers: Collection[str]) -> dict[str, KeptCustomer]:
    """The backtest's kept customers among these."""
    query = select(BV.c.customer_id, BV.c.basis, BV.c.name, BV.c.mrr, BV.c.spans).where(
        BV.c.account_id == account_id, BV.c.customer_id.in_(list(customers))
    )
    return {
        cid: KeptCustomer(
            basis,
            name,
            [int(x) for x in mrr[0]],
            [int(x) for x in mrr[1]],
            [(int(s[0]), int(s[1]), tuple(s[2]) if s[2] is not None else None) for s in spans],
        )
        for cid, basis, name, mrr, spans in conn.execute(query)
    }


def save_kept_customers(
    conn: Connection,
    account_id: int,
    found: Mapping[str, KeptCustomer],
    since: int,
    held_only: Collection[str] = (),
) -> None:
    """Store (or replace) these customers, judged from rows read at epoch `since` (see save_verdicts).

    `held_only`: customers stored already whose spans and MRR steps are as stored (not judged again tonight):
    only their contribution and its days are written. A night due for many customers (around a month
    start, their points cross a renewal) would otherwise write every one's spans again, unchanged."""
    rows = [
        {
            "account_id": account_id,
            "customer_id": cid,
            "basis": k.basis,
            "name": k.name,
            "mrr": [k.instants, k.values],
            "spans": [[a, b, list(c) if c is not None else None] for a, b, c in k.spans],
            **_held_columns(k.held),
        }
        for cid, k in found.items()
        if cid not in held_only
    ]
    updates = [
        {"the_customer": cid, "the_basis": k.basis, **_held_columns(k.held, prefix="new_")}
        for cid, k in found.items()
        if cid in held_only
    ]
    keep = ["basis", "name", "mrr", "spans", *HELD_COLUMNS]

    def write() -> None:
        if rows:
            _upsert(conn, BV, rows, keep)
        if updates:
            held = update(BV).where(
                BV.c.account_id == account_id,
                BV.c.customer_id == bindparam("the_customer"),
                BV.c.basis == bindparam("the_basis"),
            )  # bound names apart from the columns': SQLAlchemy keeps those for the SET clause
            values = {c: bindparam(f"new_{c}", type_=BV.c[c].type) for c in HELD_COLUMNS}
            conn.execute(held.values(values), updates)

    _store_if_unchanged(conn, account_id, since, write)


HELD_COLUMNS = ("held_from", "held_until", "paying", "outcomes")


def _held_columns(held: Held | None, prefix: str = "") -> dict[str, Any]:
    """The contribution's columns (HELD_COLUMNS), their names prefixed as the statement binds them."""
    if held is None:
        values: tuple[Any, ...] = (None, None, None, None)
    else:
        values = (held.since, held.until, held.contribution.paying, _outcomes(held.contribution))
    return {prefix + name: value for name, value in zip(HELD_COLUMNS, values, strict=True)}


# -- forgetting ------------------------------------------------------------------------------------
def forget(conn: Connection, account_id: int, customers: Collection[str] | None) -> None:
    """Drop the stored verdicts of these customers (None: of every customer): their history changed.

    The epoch moves first, so a run that read the old history and stores after this commits stores nothing."""
    if customers is not None and not customers:
        return  # nothing changed (a quiet night's rebuild): what is being judged meanwhile may be kept
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    bump = dialect.insert(VE).values(account_id=account_id, epoch=1)
    conn.execute(bump.on_conflict_do_update(index_elements=["account_id"], set_={"epoch": VE.c.epoch + 1}))
    for table in (RV, BV):
        query = delete(table).where(table.c.account_id == account_id)
        if customers is None:
            conn.execute(query)
            continue
        ids = list(customers)
        for n in range(0, len(ids), WRITE_CHUNK):
            conn.execute(query.where(table.c.customer_id.in_(ids[n : n + WRITE_CHUNK])))
