"""Reads of what an account was billed and is subscribed to: invoice lines with their invoice and price,
subscriptions, their current items, product names. The ledger rebuild (worker/rebuild.py) reads all of it.

Rows come straight from the driver (metrics.tables.raw_rows) as NamedTuples, which are plain tuples: the
rebuild unpacks a line by position in its hot loop, and a NamedTuple names every position at no extra cost
there. A rebuild reads every line of the account, so these functions never build SQLAlchemy Row objects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, and_, case, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from integrations.stripe import models
from metrics.tables import raw_rows, table_of


class StoredLine(NamedTuple):
    """A stored invoice line, then its invoice's fields, then its price's (None where either is not stored).

    Values are as the driver gives them: `proration` is 0/1 on SQLite.
    """

    id: str
    invoice_id: str
    customer_id: str | None
    currency: str | None
    amount: int
    discount_total: int
    inclusive_tax: int
    period_start: int | None
    period_end: int | None
    parent_type: str | None
    legacy_type: str | None
    proration: bool
    price_id: str | None
    product_id: str | None
    subscription_id: str | None
    subscription_item_id: str | None
    quantity: int | None
    # the invoice's
    invoice_customer_id: str | None
    invoice_currency: str | None
    invoice_status: str | None
    invoice_created: int | None
    invoice_subscription_id: str | None
    # the price's
    price_product_id: str | None
    price_type: str | None
    price_interval: str | None
    price_interval_count: int | None
    price_usage_type: str | None


# The line's own columns are StoredLine's first fields, under the same names; then the invoice's and the
# price's columns, in StoredLine's order.
_LINE_COLUMNS = StoredLine._fields[: StoredLine._fields.index("quantity") + 1]
_INVOICE_COLUMNS = ("customer_id", "currency", "status", "created", "subscription_id")
_PRICE_COLUMNS = ("product_id", "type", "interval", "interval_count", "usage_type")
_NO_INVOICE: tuple[Any, ...] = (None,) * len(_INVOICE_COLUMNS)
_NO_PRICE: tuple[Any, ...] = (None,) * len(_PRICE_COLUMNS)


def _by_id(
    conn: Connection, table: Table, account_id: int, columns: tuple[str, ...]
) -> dict[str, tuple[Any, ...]]:
    """These columns of the account's rows of `table`, by Stripe id."""
    query = select(table.c.id, *(table.c[name] for name in columns)).where(table.c.account_id == account_id)
    return {r[0]: r[1:] for r in raw_rows(conn, query)}


def stored_lines(conn: Connection, account_id: int) -> Iterator[StoredLine]:
    """Every stored line of the account with its invoice's and price's fields, in line id order.

    The joins are done here from two dicts rather than in SQL: SQLite's nested loop seeks the invoice table
    (wide rows with the raw JSON) once per line, twice the time of reading both tables once.
    """
    invoices = _by_id(conn, table_of(models.StripeInvoice), account_id, _INVOICE_COLUMNS)
    prices = _by_id(conn, table_of(models.StripePrice), account_id, _PRICE_COLUMNS)
    li = table_of(models.StripeInvoiceLine)
    query = (
        select(*(li.c[name] for name in _LINE_COLUMNS)).where(li.c.account_id == account_id).order_by(li.c.id)
    )
    invoice_of, price_of, new = invoices.get, prices.get, tuple.__new__  # bound once: called per line
    for row in raw_rows(conn, query):  # row[1] is the invoice id, row[12] the price id
        yield new(StoredLine, row + invoice_of(row[1], _NO_INVOICE) + price_of(row[12], _NO_PRICE))


class StoredSubscription(NamedTuple):
    """A subscription's state: who pays, whether and when it ended or will end, its current period, and
    when a full sync found it gone from Stripe (None while Stripe lists it)."""

    id: str
    customer_id: str
    status: str
    ended_at: int | None
    canceled_at: int | None
    cancel_at: int | None
    current_period_start: int | None
    current_period_end: int | None
    deleted_at: int | None


def subscriptions(conn: Connection, account_id: int) -> list[StoredSubscription]:
    """Every stored subscription of the account, whatever its status, deleted ones included."""
    s = table_of(models.StripeSubscription)
    columns = [s.c[name] for name in StoredSubscription._fields[:-1]]
    deleted_at = case((s.c.deleted.is_(True), s.c.deleted_at), else_=None)
    query = select(*columns, deleted_at).where(s.c.account_id == account_id)
    return list(map(StoredSubscription._make, raw_rows(conn, query)))


def deleted_customers(conn: Connection, account_id: int) -> dict[str, int]:
    """When each customer deleted in Stripe was found so, by customer id: nothing of theirs counts after."""
    c = table_of(models.StripeCustomer)
    query = select(c.c.id, c.c.deleted_at).where(
        c.c.account_id == account_id, c.c.deleted.is_(True), c.c.deleted_at.is_not(None)
    )
    return {customer_id: int(at) for customer_id, at in conn.execute(query)}


class PricedItem(NamedTuple):
    """A subscription's current item with its price's fields (None where the price is not stored)."""

    id: str
    subscription_id: str
    price_id: str | None
    quantity: int | None
    current_period_start: int | None
    current_period_end: int | None
    product_id: str | None
    currency: str | None
    unit_amount: int | None
    type: str | None
    interval: str | None
    interval_count: int | None
    usage_type: str | None


_ITEM_COLUMNS = PricedItem._fields[: PricedItem._fields.index("current_period_end") + 1]


def subscription_items(
    conn: Connection,
    account_id: int,
    price_ids: Collection[str] | None = None,
    subscription_ids: Collection[str] | None = None,
) -> list[PricedItem]:
    """Every current subscription item of the account with its price, by subscription then item id; or only
    the items on these prices (the at-risk signals ask for the metered ones), or of these subscriptions (one
    batch of customers)."""
    it, pr = table_of(models.StripeSubscriptionItem), table_of(models.StripePrice)
    price_columns = PricedItem._fields[len(_ITEM_COLUMNS) :]
    query = (
        select(*(it.c[name] for name in _ITEM_COLUMNS), *(pr.c[name] for name in price_columns))
        .select_from(it.outerjoin(pr, and_(pr.c.account_id == it.c.account_id, pr.c.id == it.c.price_id)))
        .where(it.c.account_id == account_id)
        .order_by(it.c.subscription_id, it.c.id)
    )
    if price_ids is not None:
        query = query.where(it.c.price_id.in_(list(price_ids)))
    if subscription_ids is not None:
        query = query.where(it.c.subscription_id.in_(list(subscription_ids)))
    return list(map(PricedItem._make, raw_rows(conn, query)))


def product_names(conn: Connection, account_id: int) -> dict[str, str]:
    """Stored products' names by product id (products without a name are left out)."""
    p = table_of(models.StripeProduct)
    query = select(p.c.id, p.c.name).where(p.c.account_id == account_id, p.c.name.is_not(None))
    return {product_id: name for product_id, name in conn.execute(query)}


def has_lines(conn: Connection, account_id: int) -> bool:
    """Whether any invoice line of the account is stored (one index probe, not a count)."""
    li = table_of(models.StripeInvoiceLine)
    return conn.execute(select(li.c.id).where(li.c.account_id == account_id).limit(1)).first() is not None


# -- per batch of customers (the rebuild goes through an account a batch at a time: memory stays flat) -------
# Customer ids go into the statements as quoted literals (raw_rows inlines them); a batch is a few hundred.


def customer_ids(conn: Connection, account_id: int) -> list[str]:
    """Every customer a stored invoice line, invoice or subscription names, sorted (the full rebuild's
    batches); ids only, a few MB at 100,000 customers."""
    li, inv = table_of(models.StripeInvoiceLine), table_of(models.StripeInvoice)
    s = table_of(models.StripeSubscription)
    found: set[str] = set()
    for table in (li, inv, s):
        query = select(table.c.customer_id).where(table.c.account_id == account_id).distinct()
        found.update(c for (c,) in raw_rows(conn, query) if c)
    return sorted(found)


def earliest_time(conn: Connection, account_id: int) -> int | None:
    """The earliest period start, invoice date or current period start stored: no ledger line starts before
    it (the rebuild writes snapshots from its month on, then drops the months before the first revenue)."""
    li, inv = table_of(models.StripeInvoiceLine), table_of(models.StripeInvoice)
    s, it = table_of(models.StripeSubscription), table_of(models.StripeSubscriptionItem)
    found = [
        conn.execute(select(func.min(col)).where(table.c.account_id == account_id)).scalar()
        for table, col in (
            (li, li.c.period_start),
            (inv, inv.c.created),
            (s, s.c.current_period_start),
            (it, it.c.current_period_start),
        )
    ]
    times = [int(t) for t in found if t is not None]
    return min(times) if times else None


PriceFields = dict[str, tuple[Any, ...]]


def price_fields(conn: Connection, account_id: int) -> PriceFields:
    """The fields of every stored price a line takes (product, type, interval, count, usage type), by id: a
    few hundred prices, read once per rebuild."""
    return _by_id(conn, table_of(models.StripePrice), account_id, _PRICE_COLUMNS)


def lines_of(
    conn: Connection, account_id: int, customers: Sequence[str] | None, prices: PriceFields
) -> list[StoredLine]:
    """The stored lines of these customers (None: the lines that name no customer) with their invoice's and
    price's fields, in line id order."""
    li, inv = table_of(models.StripeInvoiceLine), table_of(models.StripeInvoice)
    if customers is None:
        line_cond = li.c.customer_id.is_(None)
        inv_query = select(inv.c.id, *(inv.c[n] for n in _INVOICE_COLUMNS)).where(
            inv.c.account_id == account_id,
            inv.c.id.in_(select(li.c.invoice_id).where(li.c.account_id == account_id, line_cond)),
        )
    else:
        line_cond = li.c.customer_id.in_(list(customers))
        inv_query = select(inv.c.id, *(inv.c[n] for n in _INVOICE_COLUMNS)).where(
            inv.c.account_id == account_id, inv.c.customer_id.in_(list(customers))
        )
    query = select(*(li.c[name] for name in _LINE_COLUMNS)).where(li.c.account_id == account_id, line_cond)
    # sorted by _joined, not by the database: a batch is small, and SQLite would sort it in a temporary b-tree
    return _joined(list(raw_rows(conn, query)), raw_rows(conn, inv_query), prices)


STREAM_CHUNK = 5_000  # rows fetched at a time from each of lines_in_batches' streams (memory: a few MB)


def lines_in_batches(
    conn: Connection, account_id: int, batches: Iterable[Sequence[str]], prices: PriceFields
) -> Iterator[list[StoredLine]]:
    """For each batch, lines_of(batch): the same lines, fields and order, read for a whole account at once.

    `batches` are consecutive slices of the sorted ids of every customer a stored line or invoice names (a
    full rebuild's). Read a batch at a time through the customer index, the lines of a batch are spread over
    the whole table (stored in sync order, not by customer): at 100,000 customers every line cost a page read
    of its own, and the rebuild's reads grew faster than the account. Here each table is scanned once, in
    storage order, and sorted by customer in the database (a sort that spills to temporary files, so memory
    stays bounded); each batch then takes its customers' rows off the front of the two sorted streams.
    """
    li, inv = table_of(models.StripeInvoiceLine), table_of(models.StripeInvoice)
    # Neither the filter nor the order is one an index can serve (`account_id + 0`, the customer id as an
    # expression), so the planner scans the table and sorts, rather than walking an index and seeking each
    # row, what made the batches slow (with an `IS NOT NULL` on the customer, SQLite walked the customer
    # index). The rows naming no customer are dropped as they come.
    line_query = (
        select(*(li.c[name] for name in _LINE_COLUMNS))
        .where(li.c.account_id + 0 == account_id)
        .order_by(_bytewise(conn, li.c.customer_id))
    )
    inv_query = (
        select(inv.c.id, *(inv.c[n] for n in _INVOICE_COLUMNS))
        .where(inv.c.account_id + 0 == account_id)
        .order_by(_bytewise(conn, inv.c.customer_id))
    )
    lines = _SortedStream(raw_rows(conn, line_query, True, STREAM_CHUNK), key=2)  # row[2]: the customer
    invoices = _SortedStream(raw_rows(conn, inv_query, True, STREAM_CHUNK), key=1)  # row[1]: the customer
    for batch in batches:
        yield _joined(lines.upto(batch[-1]), invoices.upto(batch[-1]), prices) if batch else []


def _joined(
    line_rows: list[tuple[Any, ...]], invoice_rows: Iterable[tuple[Any, ...]], prices: PriceFields
) -> list[StoredLine]:
    """Lines with their invoice's and price's fields, in line id order (lines_of's, and each batch's of
    lines_in_batches)."""
    invoice_of = {r[0]: r[1:] for r in invoice_rows}.get
    price_of, new = prices.get, tuple.__new__  # bound once: called per line
    return [
        new(StoredLine, row + invoice_of(row[1], _NO_INVOICE) + price_of(row[12], _NO_PRICE))
        for row in sorted(line_rows)  # row[0] is the line id, row[1] the invoice's, row[12] the price's
    ]


def _bytewise(conn: Connection, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`column` as an expression (`|| ''`: no index gives its order) to order by as Python compares str (by
    code point, which UTF-8 bytes keep): SQLite's default collation already does; PostgreSQL's follows the
    database's locale unless told "C"."""
    key = column.concat("")
    return key.collate("C") if conn.dialect.name == "postgresql" else key


class _SortedStream:
    """Rows sorted by row[key], handed out a leading run at a time (those whose key is None left out)."""

    def __init__(self, rows: Iterator[tuple[Any, ...]], key: int) -> None:
        self._rows, self._key = (row for row in rows if row[key] is not None), key
        self._next: tuple[Any, ...] | None = next(self._rows, None)

    def upto(self, last: str) -> list[tuple[Any, ...]]:
        """The rows whose key is at most `last`, taken off the stream."""
        taken: list[tuple[Any, ...]] = []
        row, key, rows = self._next, self._key, self._rows
        while row is not None and row[key] <= last:
            taken.append(row)
            row = next(rows, None)
        self._next = row
        return taken


def subscriptions_of(
    conn: Connection, account_id: int, customers: Sequence[str], ids: Collection[str] = ()
) -> list[StoredSubscription]:
    """The subscriptions of these customers, or with these ids."""
    s = table_of(models.StripeSubscription)
    cond: ColumnElement[bool] = s.c.customer_id.in_(list(customers))
    if ids:
        cond = or_(cond, s.c.id.in_(list(ids)))
    columns = [s.c[name] for name in StoredSubscription._fields[:-1]]
    deleted_at = case((s.c.deleted.is_(True), s.c.deleted_at), else_=None)  # as subscriptions() reads it
    query = select(*columns, deleted_at).where(s.c.account_id == account_id, cond)
    return list(map(StoredSubscription._make, raw_rows(conn, query)))


def deleted_customers_of(conn: Connection, account_id: int, customers: Sequence[str]) -> dict[str, int]:
    """deleted_customers() of these customers only."""
    c = table_of(models.StripeCustomer)
    query = select(c.c.id, c.c.deleted_at).where(
        c.c.account_id == account_id,
        c.c.id.in_(list(customers)),
        c.c.deleted.is_(True),
        c.c.deleted_at.is_not(None),
    )
    return {customer_id: int(at) for customer_id, at in conn.execute(query)}


def customers_on(
    conn: Connection, account_id: int, price_ids: Collection[str], product_ids: Collection[str]
) -> set[str]:
    """The customers billed or subscribed on these prices, or on prices of these products (a changed price or
    product name changes their ledger lines or snapshot plans)."""
    if not price_ids and not product_ids:
        return set()
    li, it = table_of(models.StripeInvoiceLine), table_of(models.StripeSubscriptionItem)
    s, pr = table_of(models.StripeSubscription), table_of(models.StripePrice)
    prices = set(price_ids)
    if product_ids:
        query = select(pr.c.id).where(pr.c.account_id == account_id, pr.c.product_id.in_(list(product_ids)))
        prices.update(p for (p,) in conn.execute(query))
    found: set[str] = set()
    on_line: ColumnElement[bool] = li.c.price_id.in_(list(prices))
    if product_ids:
        on_line = or_(on_line, li.c.product_id.in_(list(product_ids)))
    query = select(li.c.customer_id).where(li.c.account_id == account_id, on_line).distinct()
    found.update(c for (c,) in conn.execute(query) if c)
    query = (
        select(s.c.customer_id)
        .select_from(it.join(s, and_(s.c.account_id == it.c.account_id, s.c.id == it.c.subscription_id)))
        .where(it.c.account_id == account_id, it.c.price_id.in_(list(prices)))
        .distinct()
    )
    found.update(c for (c,) in conn.execute(query) if c)
    return found
