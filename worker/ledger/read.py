"""What the rebuild reads for a batch of customers: their stored lines (with invoice and price fields), their
subscriptions and current items, all through integrations/stripe/repository/billing.py.

A batch is a few hundred customers, so memory stays bounded whatever the account's size; prices and product
names (a few hundred rows) are read once per rebuild.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from integrations.stripe.repository import billing

BATCH_CUSTOMERS = 4_000


@dataclass
class Batch:
    """The stored objects of a batch of customers (or of no customer: lines that name none)."""

    lines: list[billing.StoredLine]
    subscriptions: list[billing.StoredSubscription]
    items: list[billing.PricedItem]
    gone: dict[str, int]  # when each customer deleted in Stripe was found so (nothing of theirs counts after)


@dataclass
class Shared:
    """What every batch of one rebuild uses: the account's prices and its products' names."""

    prices: billing.PriceFields
    product_names: dict[str, str]


def shared(conn: Connection, account_id: int) -> Shared:
    return Shared(billing.price_fields(conn, account_id), billing.product_names(conn, account_id))


def batches(customers: Sequence[str], size: int | None = None) -> Iterator[list[str]]:
    """The customers in slices of `size` (default BATCH_CUSTOMERS; sorted first, so a rerun reads in the same
    order)."""
    size = size or BATCH_CUSTOMERS
    ordered = sorted(customers)
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


def read_batch(conn: Connection, account_id: int, customers: list[str], common: Shared) -> Batch:
    """Every stored line, subscription and current item of these customers. A line naming a subscription
    of a customer outside the batch (Stripe never does this) still finds it, for when it ended."""
    lines = list(billing.lines_of(conn, account_id, customers, common.prices))
    subs = billing.subscriptions_of(conn, account_id, customers)
    known = {s.id for s in subs}
    named = (line.subscription_id or line.invoice_subscription_id for line in lines)
    others = {s for s in named if s and s not in known}
    if others:
        subs += [s for s in billing.subscriptions_of(conn, account_id, [], others) if s.id not in known]
    items = billing.items_of(conn, account_id, customers)
    return Batch(lines, subs, items, billing.deleted_customers_of(conn, account_id, customers))


def read_orphans(conn: Connection, account_id: int, common: Shared) -> Batch:
    """The stored lines that name no customer (the build reports them as problems)."""
    return Batch(list(billing.lines_of(conn, account_id, None, common.prices)), [], [], {})
