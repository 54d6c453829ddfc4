"""A small account that pays today, for the same-day watch: customer k pays (k + 1) x $10 a month.

Ten customers by default, so the top fifth by MRR (the default urgent floor) is the two largest: $100 and $90
(worked by hand: ceil(10 / 5) = 2, the second largest is customer 8's 9 x $10). Periods are anchored on the
real clock, because a watch tick judges the account as of now.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from tests.support.stripe_world import add_account
from worker.db import session_scope
from worker.demo import builders as b
from worker.demo.stripe_server import StripeWorld
from worker.models import Account
from worker.rebuild import rebuild_account
from worker.secrets import Secret, encrypt
from worker.settings import get_settings
from worker.syncing import run_sync

DAY = 86400
UNIT = 1000  # cents: customer k pays (k + 1) x UNIT a month


def now() -> int:
    return int(time.time())


def schedule_cancel(stripe_world: StripeWorld, k: int, at: int | None = None) -> None:
    """Customer k asks to cancel at period end (at `at`, default now), with the event Stripe sends."""
    at = at or now()
    stripe_world.change(
        "subscription",
        f"sub_{k:05d}",
        "customer.subscription.updated",
        at,
        cancel_at_period_end=True,
        canceled_at=at,
    )


def withdraw_cancel(stripe_world: StripeWorld, k: int) -> None:
    """Customer k takes the cancellation back."""
    stripe_world.change(
        "subscription",
        f"sub_{k:05d}",
        "customer.subscription.updated",
        now(),
        cancel_at_period_end=False,
        canceled_at=None,
    )


def build_paying_world(customers: int = 10, names: dict[int, str] | None = None) -> StripeWorld:
    """Every customer on one monthly plan, the current period started 10 days ago and paid, the one before
    paid too; nothing scheduled to cancel, nothing failed, and no events yet."""
    world = StripeWorld()
    start = now() - 40 * DAY
    world.add(b.product("prod_plan", "Plan", created=start - DAY))
    for k in range(customers):
        cid, sub_id = f"cus_{k:05d}", f"sub_{k:05d}"
        price = b.price(f"price_{k:05d}", "prod_plan", (k + 1) * UNIT, created=start - DAY)
        world.add(price)
        world.add(b.customer(cid, (names or {}).get(k, f"Customer {k}"), created=start))
        current = (now() - 10 * DAY, now() + 20 * DAY)
        item = b.subscription_item(f"si_{k:05d}", sub_id, price, period=current)
        world.add(b.subscription(sub_id, cid, [item], created=start))
        for m, period in enumerate([(current[0] - 30 * DAY, current[0]), current]):
            inv = f"in_{k:05d}_{m}"
            line = b.line(
                f"il_{k:05d}_{m}",
                inv,
                (k + 1) * UNIT,
                period,
                price_obj=price,
                subscription=sub_id,
                subscription_item=f"si_{k:05d}",
            )
            world.add(b.invoice(inv, cid, [line], created=period[0], subscription=sub_id, period=period))
    return world


def connect_synced(
    engine: Engine, api_base: str, slack_url: str | None, name: str = "acme", rebuild: bool = True
) -> Account:
    """A connected account with its own Slack webhook, fully synced and rebuilt (as after a nightly; only
    synced without `rebuild`)."""
    account = add_account(engine, api_base, name=name)
    with session_scope(engine) as session:
        row = session.get(Account, account.id)
        assert row is not None
        if slack_url is not None:
            row.slack_webhook_encrypted = encrypt(get_settings(), Secret(slack_url))
        session.add(row)
        session.flush()
        session.refresh(row)
        session.expunge(row)
    assert run_sync(engine, get_settings(), row, full=True).ok
    if rebuild:
        rebuild_account(engine, row)
    return row
