"""The sample company: a generated, deterministic Stripe account for the demo, e2e tests and benchmarks.

"Northwind Analytics" sells a B2B product on monthly, quarterly and annual plans. Its history holds every
case the metrics must get right: seats, metered usage billed in arrears, coupons (one of them 100%),
inclusive VAT for EU customers, prorated mid-month upgrades, trials, setup and services fees (heavier in the
last month, so the naive "including one-time" NRR visibly differs from the real one), churn, reactivations,
failed payments, scheduled cancellations, declining usage, invoices of more than 10 lines, void and draft
invoices, credit notes and events.

Churn looks as it does in life, so the at-risk backtest has something to measure: most churners show a
precursor 1-4 months before they leave (seats cut in steps, metered usage falling, renewals failing until they
are written off, or an annual plan's cancellation asked for months ahead), a fifth leave suddenly (a
cancellation scheduled days before). Healthy customers carry noise: a seat more or less, usage wobbling, a
failed payment recovered after some days, now and then a real seat cut that leads nowhere, and some metered
customers whose usage dips every December. Invoices carry `status_transitions` (finalized, paid, voided,
written off) so every state can be dated.

Why every period sits on calendar month boundaries: the sample's "now" is `end` (a month start), and every
live subscription's current period then covers the whole current month, so figures as of any day of that
month agree. Everything comes from one `random.Random(seed)` and counters, never the wall clock (except the
default `end`), so the same arguments give byte-identical JSON. Objects come from builders.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from metrics.calendar import day_ts, month_start, months_back, utc_day, utc_now
from worker.demo import builders
from worker.demo.abroad import bill_abroad
from worker.demo.stripe_server import StripeWorld

Obj = dict[str, Any]
Found = tuple[int, str, Obj]
DAY = 86400
EVENT_WINDOW_DAYS = 30  # Stripe keeps events 30 days

# product key -> (name, monthly unit amount in cents, per seat?)
PLANS: dict[str, tuple[str, int, bool]] = {
    "starter": ("Starter", 4900, False),
    "growth": ("Growth", 2500, True),
    "scale": ("Scale", 6000, True),
    "enterprise": ("Enterprise", 250000, False),
}
PLAN_ORDER = ["starter", "growth", "scale", "enterprise"]
# interval months -> (Stripe interval, interval_count, multiplier on 100 x monthly price)
INTERVALS: dict[int, tuple[str, int, int]] = {
    1: ("month", 1, 100),
    3: ("month", 3, 285),
    12: ("year", 1, 1020),
}
CHURN_PER_MONTH = {"starter": 0.035, "growth": 0.02, "scale": 0.012, "enterprise": 0.006}
SUDDEN_SHARE = 0.15  # churners who show nothing but a cancellation scheduled days before
PRECURSOR_LEADS = ([1, 2, 3, 4], [10, 35, 35, 20])  # months between the first sign and the end, and weights
SEASONAL_SHARE = 0.3  # metered customers whose usage dips every December
FINALIZE_AFTER = 3600  # Stripe finalizes a renewal invoice about an hour after creating it
ADDONS = [
    "SSO",
    "Audit log",
    "Premium support",
    "Sandbox",
    "Data residency",
    "Advanced roles",
    "Custom domains",
    "API boost",
    "Extra storage",
    "Priority queue",
    "Dedicated IP",
    "SLA 99.99",
]
ADDON_AMOUNT = 20000
METER_UNIT_AMOUNT = 2  # cents per API call block
METER = "mtr_api_calls"
SETUP_AMOUNTS = {"growth": 50000, "scale": 150000, "enterprise": 500000}
SERVICES_HOURLY = 20000
EU_VAT = {"DE": 19, "FR": 20, "NL": 21, "IE": 23, "ES": 21}
# invoice status -> the event that follows `invoice.created` for it
INVOICE_FOLLOW_UP = {
    "paid": "invoice.paid",
    "open": "invoice.payment_failed",
    "void": "invoice.voided",
    "uncollectible": "invoice.marked_uncollectible",
}

_FIRST = [
    "Acme",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Raven",
    "Summit",
    "Tidal",
    "Umber",
    "Vertex",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zephyr",
]
_SECOND = [
    "Analytics",
    "Labs",
    "Logistics",
    "Health",
    "Robotics",
    "Foods",
    "Capital",
    "Studio",
    "Systems",
    "Networks",
    "Energy",
    "Retail",
    "Media",
    "Freight",
    "Bio",
    "Works",
]
_SUFFIX = ["Inc.", "LLC", "GmbH", "Ltd", "SAS", "BV", "Co."]


def default_end() -> date:
    """The first day of the current month (UTC): the sample company's "now"."""
    return month_start(utc_now().date())


def build_sample_world(
    seed: int = 7, customers: int = 300, months: int = 24, end: date | None = None, packed: bool = False
) -> StripeWorld:
    """The sample company's Stripe account: `customers` customers over the `months` months before `end`.

    `end` is taken as a month start (a later day is moved back to the 1st); it is the sample's "now":
    nothing is created after it, and the current period of every live subscription starts on or before it.

    With `packed`, each customer's objects are packed (StripeWorld.pack) as soon as they are made, so a large
    account never exists as dicts; the objects served are the same.
    """
    if customers < 0 or months < 1:
        raise ValueError("customers must be >= 0 and months >= 1")
    end_day = month_start(end or default_end())
    gen = _Generator(random.Random(seed), end_day, months)
    gen.catalog()
    for n in range(customers):
        gen.customer(n)
        if packed:
            gen.settle(pack=True)
    gen.settle(pack=False)
    gen.events()
    if packed:
        gen.world.pack()
    return gen.world


def world_objects(world: StripeWorld) -> Obj:
    """Every object of a world (and every invoice's full lines) as one JSON-ready dict, ids sorted."""
    out: Obj = {"account": world.account}
    for kind, coll in sorted(world.collections.items()):
        out[kind] = [coll.by_id[i] for i in sorted(coll.by_id)]
    out["invoice_lines"] = {i: world.invoice_lines[i] for i in sorted(world.invoice_lines)}
    out["meter_summaries"] = {m: world.meter_summaries[m] for m in sorted(world.meter_summaries)}
    return out


@dataclass(frozen=True)
class _Fate:
    """How a subscription will end: the month index it ends at (None: it lives on), the precursor shown
    before (`sudden`, `seats`, `usage`, `payment`, `downgrade`, `early_cancel`) and how many months ahead it
    shows."""

    ends: int | None = None
    kind: str = "none"
    lead: int = 0

    def shows(self, kind: str, m: int) -> bool:
        """Whether month index m lies in the precursor's months [ends - lead, ends)."""
        return self.kind == kind and self.ends is not None and self.ends - self.lead <= m < self.ends


@dataclass
class _Sub:
    """The state of one subscription while its history is simulated."""

    id: str
    start: int  # month index of the first paid period
    interval: int  # months per period
    plan: str
    seats: int
    item_id: str
    metered_item: str | None = None
    usage: float = 0.0
    addon_items: list[str] = field(default_factory=list)
    last_usage: int | None = None
    fate: _Fate = field(default_factory=_Fate)


class _Generator:
    """Builds the world customer by customer; counters make ids stable and readable."""

    def __init__(self, rng: random.Random, end: date, months: int) -> None:
        self.rng = rng
        self.months = months
        # month index k (0..months+12) -> Unix seconds of that month's first day; k == months is `end`
        self.ts = [day_ts(month_start(months_back(end, months - k))) for k in range(months + 13)]
        self.end = self.ts[months]
        self.world = StripeWorld(builders.account(id="acct_sample", name="Northwind Analytics"))
        self.prices: dict[str, Obj] = {}
        self.counters: dict[str, int] = {}
        self.changed_subs: list[tuple[int, str, str]] = []  # (when, event type, subscription id) for events
        # (when, event type, object) of the changes events() makes events of: customers, invoices, credit
        # notes, subscriptions (found by settle(), in this order, as the objects are made)
        self.found: tuple[list[Found], list[Found], list[Found], list[Found]] = ([], [], [], [])

    # -- ids -------------------------------------------------------------------------------------------------
    def next_id(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}_{n:07d}"

    # -- catalog ---------------------------------------------------------------------------------------------
    def catalog(self) -> None:
        created = self.ts[0] - 90 * DAY
        add = self.world.add
        for key, (name, monthly, _) in PLANS.items():
            add(builders.product(f"prod_{key}", name, created=created))
            for months, (interval, count, mult) in INTERVALS.items():
                for incl in (False, True):
                    pid = self.price_id(key, months, incl)
                    self.prices[pid] = add(
                        builders.price(
                            pid,
                            f"prod_{key}",
                            monthly * mult // 100,
                            interval=interval,
                            interval_count=count,
                            created=created,
                            nickname=f"{name} ({interval} x{count})",
                            tax_behavior="inclusive" if incl else "exclusive",
                        )
                    )
        add(builders.product("prod_api_calls", "API calls", created=created))
        for incl in (False, True):
            pid = "price_api_calls" + ("_incl" if incl else "")
            self.prices[pid] = add(
                builders.price(
                    pid,
                    "prod_api_calls",
                    METER_UNIT_AMOUNT,
                    usage_type="metered",
                    meter=METER,
                    created=created,
                    tax_behavior="inclusive" if incl else "exclusive",
                )
            )
        for n, addon in enumerate(ADDONS):
            add(builders.product(f"prod_addon_{n:02d}", f"Add-on: {addon}", created=created))
            self.prices[f"price_addon_{n:02d}"] = add(
                builders.price(f"price_addon_{n:02d}", f"prod_addon_{n:02d}", ADDON_AMOUNT, created=created)
            )
        add(builders.product("prod_setup", "Onboarding & setup", created=created))
        for key, amount in SETUP_AMOUNTS.items():
            self.prices[f"price_setup_{key}"] = add(
                builders.price(f"price_setup_{key}", "prod_setup", amount, interval=None, created=created)
            )
        add(builders.product("prod_services", "Professional services", created=created))
        self.prices["price_services"] = add(
            builders.price("price_services", "prod_services", SERVICES_HOURLY, interval=None, created=created)
        )
        # an old plan nobody is on any more: inactive prices are synced too
        add(builders.product("prod_legacy", "Legacy Basic", created=created, active=False))
        self.prices["price_legacy"] = add(
            builders.price("price_legacy", "prod_legacy", 1900, created=created, active=False)
        )

    @staticmethod
    def price_id(plan: str, months: int, incl: bool) -> str:
        return f"price_{plan}_{months}m" + ("_incl" if incl else "")

    # -- one customer ----------------------------------------------------------------------------------------
    def customer(self, n: int) -> None:
        rng = self.rng
        cid = f"cus_{n + 1:07d}"
        name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {rng.choice(_SUFFIX)}"
        if n < 2:  # two large multi-product accounts: invoices of 13 lines exercise /v1/invoices/{id}/lines
            plan, interval, start = "enterprise", 1, rng.randint(0, self.months // 3)
        elif n == 3:  # always at least one account whose usage falls away
            plan, interval, start = "scale", 1, rng.randint(0, self.months // 2)
        else:
            plan = rng.choices(PLAN_ORDER, weights=[40, 35, 18, 7])[0]
            interval = rng.choices([1, 3, 12], weights=[65, 15, 20])[0]
            start = (
                0 if rng.random() < 0.15 else min(self.months, int(rng.random() ** 0.7 * (self.months + 1)))
            )
        country = rng.choice(list(EU_VAT)) if rng.random() < 0.12 else "US"
        created = self.ts[start] - rng.randint(1, 20) * DAY
        trialing_now = n >= 4 and rng.random() < 0.03
        if trialing_now:
            created = self.end - rng.randint(1, 10) * DAY
        cust = builders.customer(
            cid, name=name, created=created, email=f"billing@{name.split()[0].lower()}{n + 1}.example"
        )
        cust["address"] = {"country": country}
        self.world.add(cust)
        ctx = _Customer(cid=cid, vat=EU_VAT.get(country, 0), discount=self.pick_discount(n), signed=created)
        if trialing_now:
            self.trial_only(ctx, plan, created, self.end + rng.randint(4, 13) * DAY, still_trialing=True)
            return
        trial = rng.random() < 0.3
        if trial and n >= 4 and rng.random() < 0.12:  # a trial that never converted
            self.trial_only(ctx, plan, created, self.ts[start], still_trialing=False)
            return
        self.subscription_history(ctx, n, plan, interval, start, trial_from=created if trial else None)

    def pick_discount(self, n: int) -> tuple[int, int | None]:
        """(percent off, number of invoices it lasts or None for forever)."""
        if n == 2:
            return 100, None  # a partner on a free plan: MRR 0, not a paying customer
        r = self.rng.random()
        if r < 0.08:
            return 20, None
        if r < 0.16:
            return 50, 3
        return 0, None

    def trial_only(
        self, ctx: _Customer, plan: str, trial_start: int, trial_end: int, still_trialing: bool
    ) -> None:
        """A subscription that is (or was) only a trial: one $0 invoice, no revenue."""
        sub_id = self.next_id("sub")
        si = self.next_id("si")
        price = self.prices[self.price_id(plan, 1, ctx.vat > 0)]
        inv_id = self.next_id("in")
        line = builders.line(
            f"il_{inv_id[3:]}_0",
            inv_id,
            0,
            (trial_start, trial_end),
            price_obj=price,
            subscription=sub_id,
            subscription_item=si,
            description=f"Trial period for {plan}",
        )
        self.add_invoice(ctx, inv_id, [line], trial_start, sub_id, "paid", "subscription_create")
        item = builders.subscription_item(si, sub_id, price, 1, (trial_start, trial_end), created=trial_start)
        if still_trialing:
            ending = _Ending("trialing")
        else:
            ending = _Ending("canceled", canceled_at=trial_end, ended_at=trial_end)
        self.store_subscription(ctx, sub_id, [item], trial_start, ending, trial=(trial_start, trial_end))

    def subscription_history(
        self, ctx: _Customer, n: int, plan: str, interval: int, start: int, trial_from: int | None
    ) -> None:
        """Simulates a customer's subscriptions month by month: renewals, changes, churn and reactivation."""
        rng = self.rng
        m = start
        first_sub = True
        metered = n == 3 or (n >= 2 and interval == 1 and plan in ("growth", "scale") and rng.random() < 0.35)
        ctx.seasonal = metered and n != 3 and rng.random() < SEASONAL_SHARE
        while m <= self.months:
            sub = _Sub(
                id=self.next_id("sub"),
                start=m,
                interval=interval,
                plan=plan,
                seats=self.initial_seats(plan),
                item_id=self.next_id("si"),
            )
            if metered:
                sub.metered_item = self.next_id("si")
                sub.usage = rng.uniform(2000, 40000)
            if n < 2:
                sub.addon_items = [self.next_id("si") for _ in ADDONS]
            sub.fate = self.fate(sub, declining=n == 3)
            ended = self.run_subscription(ctx, sub, trial_from if first_sub else None, setup=first_sub)
            first_sub = False
            if ended is None or rng.random() > 0.2:
                return
            m = ended + rng.randint(2, 8)  # a reactivation, on a fresh subscription
            plan = rng.choice(PLAN_ORDER[:3])
            interval = 1

    def initial_seats(self, plan: str) -> int:
        if plan == "growth":
            return self.rng.randint(3, 25)
        if plan == "scale":
            return self.rng.randint(5, 60)
        return 1

    def run_subscription(self, ctx: _Customer, sub: _Sub, trial_from: int | None, setup: bool) -> int | None:
        """Invoices every period of one subscription; returns the month index it ended at, or None if live."""
        ts = self.ts
        created = ts[sub.start]
        if trial_from is not None:
            self.trial_invoice(ctx, sub, trial_from)
        if setup and sub.plan in SETUP_AMOUNTS:
            self.setup_invoice(ctx, sub.plan)
        period_start = sub.start
        invoices = 0
        status = "active"
        m = sub.start
        ended: int | None = None
        while m <= self.months:
            if m == sub.fate.ends:
                ended = m
                break
            if m == period_start:
                if self.renew(ctx, sub, m, invoices) == "open":
                    status = "past_due"
                invoices += 1
                period_start = m + sub.interval
            self.between_renewals(ctx, sub, m)
            m += 1
        current = period_start - sub.interval
        items = self.items(sub, (ts[current], ts[current + sub.interval]), created, ctx.vat > 0)
        ending = self.ending(ctx, sub, ended, status, renews_at=ts[current + sub.interval])
        trial = (trial_from, created) if trial_from is not None else None
        self.store_subscription(ctx, sub.id, items, created, ending, trial)
        return ended

    def renew(self, ctx: _Customer, sub: _Sub, m: int, invoices: int) -> str:
        """A period starts in month m: seats and plan may move, then it is invoiced; returns its state."""
        if m > sub.start:
            if sub.fate.shows("seats", m) and PLANS[sub.plan][2]:
                sub.seats = max(1, min(sub.seats - 1, round(sub.seats * self.rng.uniform(0.7, 0.85))))
            elif sub.fate.shows("downgrade", m) and sub.plan in ("growth", "scale"):
                self.plan_down(sub)  # a cheaper plan on the way out
            else:
                self.renewal_changes(sub)
        state = self.renewal_state(m, sub.fate)
        self.renewal_invoice(ctx, sub, m, invoices, state)
        return state

    def renewal_state(self, m: int, fate: _Fate) -> str:
        """Failing renewals of a churner in dunning (written off when it ends, open while it has not); else
        only the last months hold unpaid invoices: those are the ones the at-risk screen must find today."""
        rng = self.rng
        if fate.shows("payment", m):
            return "uncollectible" if fate.ends is not None and fate.ends <= self.months else "open"
        last = m == self.months
        if last and rng.random() < 0.03:
            return "open"
        if last and rng.random() < 0.02:
            return "draft"
        if m == self.months - 1 and rng.random() < 0.01:
            return "uncollectible"
        return "paid"

    def between_renewals(self, ctx: _Customer, sub: _Sub, m: int) -> None:
        """What else month m brings: services work and, on monthly plans, now and then a mid-month upgrade."""
        if m < self.months:
            self.maybe_services(ctx, m)
            if sub.interval == 1 and self.rng.random() < 0.015:
                self.upgrade(ctx, sub, m)
        else:
            self.maybe_services(ctx, m, final=True)

    def ending(self, ctx: _Customer, sub: _Sub, ended: int | None, status: str, renews_at: int) -> _Ending:
        """How a subscription stands at the end: canceled (its last usage billed), set to cancel, or live."""
        if ended is not None:
            ending = _Ending("canceled", canceled_at=self.asked_to_cancel(sub), ended_at=self.ts[ended])
            if sub.metered_item is not None:
                self.final_usage_invoice(ctx, sub, ended)
            return ending
        fate = sub.fate
        if fate.ends is not None and fate.kind in ("sudden", "early_cancel") and status == "active":
            asked = self.asked_to_cancel(sub)
            if asked <= self.end:  # a churner of the months ahead whose cancellation is already asked for
                at_end = self.ts[fate.ends] == renews_at
                return _Ending(
                    status, cancel_at_period_end=at_end, cancel_at=self.ts[fate.ends], canceled_at=asked
                )
        if status == "active" and self.rng.random() < 0.03:
            canceled_at = self.end - self.rng.randint(1, 25) * DAY
            return _Ending(status, cancel_at_period_end=True, cancel_at=renews_at, canceled_at=canceled_at)
        return _Ending(status)

    def store_subscription(
        self,
        ctx: _Customer,
        sub_id: str,
        items: list[Obj],
        created: int,
        ending: _Ending,
        trial: tuple[int, int] | None,
    ) -> None:
        """Adds the subscription as it stands now and notes its changes, from which events() makes events."""
        self.world.add(
            builders.subscription(
                sub_id,
                ctx.cid,
                items,
                status=ending.status,
                created=created,
                cancel_at_period_end=ending.cancel_at_period_end,
                cancel_at=ending.cancel_at,
                canceled_at=ending.canceled_at,
                ended_at=ending.ended_at,
                trial_start=trial[0] if trial else None,
                trial_end=trial[1] if trial else None,
            )
        )
        self.changed_subs.append((created, "customer.subscription.created", sub_id))
        if ending.ended_at is not None:
            self.changed_subs.append((ending.ended_at, "customer.subscription.deleted", sub_id))
        elif ending.canceled_at is not None:
            self.changed_subs.append((ending.canceled_at, "customer.subscription.updated", sub_id))

    # -- churn and what shows before it -------------------------------------------------------------------
    def fate(self, sub: _Sub, declining: bool) -> _Fate:
        """When the subscription will end (drawn at each renewal, up to 4 months past `end`), and its sign.

        The `declining` sample account ends the month after `end`, its usage already falling: the at-risk
        screen of today always has a usage decline to show.
        """
        rng = self.rng
        if declining:
            return _Fate(self.months + 1, "usage", 1)
        rate = CHURN_PER_MONTH[sub.plan] * sub.interval * (0.8 if sub.interval == 12 else 1)
        ends = next(
            (
                m
                for m in range(sub.start + sub.interval, self.months + 5, sub.interval)
                if rng.random() < rate
            ),
            None,
        )
        if ends is None:
            return _Fate()
        lead = min(rng.choices(*PRECURSOR_LEADS)[0], ends - sub.start - 1)
        kind = self.precursor(sub)
        if kind == "payment":
            # dunning: the first renewal fails a month before it shows at a month start, and Stripe retries
            # for up to two months before the invoices are written off and the subscription canceled
            lead = min(min(lead, 2) + 1, ends - sub.start - 1)
        return _Fate(ends, "sudden" if lead < 1 else kind, max(lead, 0))

    def precursor(self, sub: _Sub) -> str:
        """What a churner shows first: on monthly plans its seats, usage, payments or plan; an annual or
        quarterly customer asks to cancel ahead of the renewal; a fifth of churners show nothing early."""
        rng = self.rng
        if rng.random() < SUDDEN_SHARE:
            return "sudden"
        if sub.interval != 1:
            return "early_cancel"
        options = ["payment"]
        if PLANS[sub.plan][2] and sub.seats >= 4:
            options.append("seats")
        if sub.plan in ("growth", "scale"):
            options.append("downgrade")
        if sub.metered_item is not None:
            options.append("usage")
        return rng.choice(options)

    def asked_to_cancel(self, sub: _Sub) -> int:
        """When the cancellation was asked for: months ahead (early_cancel), at the end itself (written off
        for non-payment: nothing scheduled), else a few days before."""
        fate = sub.fate
        end = self.ts[fate.ends] if fate.ends is not None else self.end
        if fate.kind == "payment":
            return end
        if fate.kind == "early_cancel" and fate.ends is not None:  # any day 5 to 17 weeks ahead
            asked = self.ts[fate.ends] - self.rng.randint(35, 120) * DAY
            return max(asked, self.ts[sub.start] + DAY)
        return end - self.rng.randint(2, 20) * DAY

    def renewal_changes(self, sub: _Sub) -> None:
        """Seats move at renewals (growth, a seat more or less, now and then a real cut that leads nowhere);
        rarely a plan is downgraded."""
        rng = self.rng
        if PLANS[sub.plan][2]:
            scale = min(sub.interval, 4)
            r = rng.random()
            if r < 0.05 * scale:
                sub.seats += rng.randint(1, 5)
            elif r < 0.09 * scale:
                sub.seats += -1 if sub.seats > 10 and rng.random() < 0.5 else 1  # under 10%: noise
            elif r < 0.0915 * scale:
                sub.seats = max(1, round(sub.seats * rng.uniform(0.6, 0.85)))
        if sub.plan in ("growth", "scale") and rng.random() < 0.0005 * sub.interval:
            self.plan_down(sub)

    @staticmethod
    def plan_down(sub: _Sub) -> None:
        sub.plan = PLAN_ORDER[PLAN_ORDER.index(sub.plan) - 1]
        sub.seats = 1 if sub.plan == "starter" else sub.seats

    # -- invoices --------------------------------------------------------------------------------------------
    def trial_invoice(self, ctx: _Customer, sub: _Sub, trial_from: int) -> None:
        inv_id = self.next_id("in")
        price = self.prices[self.price_id(sub.plan, sub.interval, ctx.vat > 0)]
        line = builders.line(
            f"il_{inv_id[3:]}_0",
            inv_id,
            0,
            (trial_from, self.ts[sub.start]),
            price_obj=price,
            subscription=sub.id,
            subscription_item=sub.item_id,
            quantity=sub.seats,
            description=f"Trial period for {PLANS[sub.plan][0]}",
        )
        self.add_invoice(ctx, inv_id, [line], trial_from, sub.id, "paid", "subscription_create")

    def renewal_invoice(self, ctx: _Customer, sub: _Sub, m: int, n: int, state: str) -> None:
        """One period's invoice: plan (in advance), last month's metered usage (arrears), add-ons."""
        ts = self.ts
        inv_id = self.next_id("in")
        lines: list[Obj] = []
        period = (ts[m], ts[m + sub.interval])
        plan_price = self.prices[self.price_id(sub.plan, sub.interval, ctx.vat > 0)]
        plan = _Charge(plan_price["unit_amount"] * sub.seats, period, plan_price, sub.item_id, sub.seats)
        lines.append(self.sub_line(ctx, inv_id, len(lines), sub, n, plan))
        if sub.metered_item is not None and m > sub.start:
            units = self.usage_units(ctx, sub, m)
            usage = _Charge(
                units * METER_UNIT_AMOUNT,
                (ts[m - 1], ts[m]),
                self.metered_price(ctx),
                sub.metered_item,
                units,
            )
            lines.append(self.sub_line(ctx, inv_id, len(lines), sub, n, usage))
        for k, item in enumerate(sub.addon_items):
            addon = _Charge(ADDON_AMOUNT, period, self.prices[f"price_addon_{k:02d}"], item, 1)
            lines.append(self.sub_line(ctx, inv_id, len(lines), sub, n, addon))
        reason = "subscription_create" if n == 0 else "subscription_cycle"
        attempts = 2 if state == "paid" and self.rng.random() < 0.015 else None  # failed once, then paid
        if state in ("open", "uncollectible"):
            attempts = self.rng.randint(1, 3) if state == "open" else self.rng.randint(3, 4)
        fate = sub.fate
        inv = self.add_invoice(ctx, inv_id, lines, ts[m], sub.id, state, reason, attempts)
        if fate.shows("payment", m) and state == "uncollectible" and fate.ends is not None:
            inv["status_transitions"]["marked_uncollectible_at"] = self.ts[fate.ends]  # when it was canceled

    def setup_invoice(self, ctx: _Customer, plan: str) -> None:
        """Onboarding is invoiced when the contract is signed (the customer's creation), before go-live.

        So a setup fee falls in the month before the customer's first paying month, never inside a cohort's
        start month: the naive NRR's inflation comes from services sold to existing customers, as in life.
        """
        inv_id = self.next_id("in")
        price = self.prices[f"price_setup_{plan}"]
        line = self.one_time_line(ctx, inv_id, 0, price, 1, ctx.signed, "Onboarding & setup")
        self.add_invoice(ctx, inv_id, [line], ctx.signed, None, "paid", "manual")

    def usage_units(self, ctx: _Customer, sub: _Sub, m: int) -> int:
        """Usage of month m-1: a noisy walk; a dip every December for seasonal customers; a churner whose
        usage falls loses about 40% more each month from its precursor on (billed from month m)."""
        sub.usage *= self.rng.gauss(1.02, 0.06)
        value = sub.usage
        if ctx.seasonal and utc_day(self.ts[m - 1]).month == 12:
            value *= self.rng.uniform(0.6, 0.75)
        fate = sub.fate
        if fate.kind == "usage" and fate.ends is not None and fate.ends - fate.lead <= m <= fate.ends:
            value *= 0.6 ** (m - (fate.ends - fate.lead) + 1)
        units = max(int(value), 100)
        self.world.meter_summaries.setdefault(METER, []).append(
            {
                "id": self.next_id("mtrusg"),
                "object": "billing.meter_event_summary",
                "aggregated_value": units,
                "start_time": self.ts[m - 1],
                "end_time": self.ts[m],
                "meter": METER,
                "livemode": False,
                "customer": ctx.cid,  # not in Stripe's object: the local server filters summaries by it
            }
        )
        return units

    def final_usage_invoice(self, ctx: _Customer, sub: _Sub, ended: int) -> None:
        """A canceled metered subscription still bills its last month's usage, at the period end."""
        inv_id = self.next_id("in")
        units = self.usage_units(ctx, sub, ended)
        usage = _Charge(
            units * METER_UNIT_AMOUNT,
            (self.ts[ended - 1], self.ts[ended]),
            self.metered_price(ctx),
            sub.metered_item or "",
            units,
        )
        line = self.sub_line(ctx, inv_id, 0, sub, 99, usage)
        self.add_invoice(ctx, inv_id, [line], self.ts[ended], sub.id, "paid", "subscription_cycle")

    def upgrade(self, ctx: _Customer, sub: _Sub, m: int) -> None:
        """A mid-month upgrade: a proration pair (unused old time, remaining new time) invoiced that day."""
        rng = self.rng
        old_plan, old_seats = sub.plan, sub.seats
        if sub.plan == "enterprise":
            return
        if PLANS[sub.plan][2] and rng.random() < 0.5:
            sub.seats += rng.randint(2, 10)
        else:
            sub.plan = PLAN_ORDER[PLAN_ORDER.index(sub.plan) + 1]
            if sub.plan == "enterprise" and PLANS["scale"][1] * sub.seats >= PLANS["enterprise"][1]:
                sub.plan = "scale"  # a large Scale team would pay less on Enterprise: it adds seats instead
                sub.seats += rng.randint(2, 10)
            elif sub.plan == "enterprise":
                sub.seats = 1
            elif sub.plan == "growth":
                sub.seats = max(3, sub.seats)
        day = self.ts[m] + rng.randint(3, 25) * DAY
        period_end = self.ts[m + 1]
        frac = (period_end - day) / (period_end - self.ts[m])
        incl = ctx.vat > 0
        old_price = self.prices[self.price_id(old_plan, 1, incl)]
        new_price = self.prices[self.price_id(sub.plan, 1, incl)]
        inv_id = self.next_id("in")
        unused = _Charge(
            -round(old_price["unit_amount"] * old_seats * frac),
            (day, period_end),
            old_price,
            sub.item_id,
            old_seats,
            proration=True,
            description=f"Unused time on {old_seats} x {PLANS[old_plan][0]}",
        )
        remaining = _Charge(
            round(new_price["unit_amount"] * sub.seats * frac),
            (day, period_end),
            new_price,
            sub.item_id,
            sub.seats,
            proration=True,
            description=f"Remaining time on {sub.seats} x {PLANS[sub.plan][0]}",
        )
        lines = [
            self.sub_line(ctx, inv_id, 0, sub, 99, unused),
            self.sub_line(ctx, inv_id, 1, sub, 99, remaining),
        ]
        self.add_invoice(ctx, inv_id, lines, day, sub.id, "paid", "subscription_update")
        self.changed_subs.append((day, "customer.subscription.updated", sub.id))

    def maybe_services(self, ctx: _Customer, m: int, final: bool = False) -> None:
        """Implementation and services work: rare in history, common in the last month (a big services push).

        That push is what makes the naive "including one-time" NRR look far better than the recurring one.
        """
        rng = self.rng
        if rng.random() >= (0.08 if final else 0.02):
            return
        hours = rng.randint(4, 24)
        many = rng.random() < 0.02 and not final
        created = self.ts[m] if final else self.ts[m] + rng.randint(1, 25) * DAY
        inv_id = self.next_id("in")
        price = self.prices["price_services"]
        if many:  # a detailed timesheet: more lines than an invoice embeds
            lines = [
                self.one_time_line(
                    ctx, inv_id, k, price, rng.randint(1, 8), created, f"Consulting, week {k + 1}"
                )
                for k in range(rng.randint(11, 16))
            ]
        else:
            lines = [self.one_time_line(ctx, inv_id, 0, price, hours, created, "Implementation services")]
        state = "paid" if final or rng.random() < 0.93 else "void"
        self.add_invoice(ctx, inv_id, lines, created, None, state, "manual")

    def sub_line(self, ctx: _Customer, inv_id: str, k: int, sub: _Sub, n: int, charge: _Charge) -> Obj:
        """Line k of a subscription's invoice n, with the customer's coupon (if it still applies) and VAT."""
        amount, price, quantity = charge.amount, charge.price, charge.quantity
        pct, duration = ctx.discount
        discount = 0
        if pct and not charge.proration and (duration is None or n < duration):
            discount = amount * pct // 100
        taxes = [(self.inclusive_tax(amount - discount, ctx.vat), "inclusive")] if ctx.vat else None
        return builders.line(
            f"il_{inv_id[3:]}_{k}",
            inv_id,
            amount,
            charge.period,
            price_obj=price,
            subscription=sub.id,
            subscription_item=charge.item,
            proration=charge.proration,
            quantity=quantity,
            discounts=[discount] if discount else None,
            taxes=taxes,
            description=charge.description or f"{quantity} x {price.get('nickname') or price['id']}",
        )

    def metered_price(self, ctx: _Customer) -> Obj:
        """The usage price whose tax behaviour matches the customer's: inclusive where VAT applies."""
        return self.prices["price_api_calls" + ("_incl" if ctx.vat else "")]

    def one_time_line(
        self, ctx: _Customer, inv_id: str, k: int, price: Obj, quantity: int, when: int, description: str
    ) -> Obj:
        amount = price["unit_amount"] * quantity
        taxes = [(self.inclusive_tax(amount, ctx.vat), "inclusive")] if ctx.vat else None
        return builders.line(
            f"il_{inv_id[3:]}_{k}",
            inv_id,
            amount,
            (when, when),
            price_obj=price,
            quantity=quantity,
            taxes=taxes,
            description=description,
            invoice_item=f"ii_{inv_id[3:]}_{k}",
        )

    @staticmethod
    def inclusive_tax(gross: int, vat: int) -> int:
        """The VAT inside a tax-inclusive amount: gross x rate / (100 + rate), rounded half away from zero."""
        sign = -1 if gross < 0 else 1
        return sign * ((abs(gross) * vat * 2 + (100 + vat)) // (2 * (100 + vat)))

    def add_invoice(
        self,
        ctx: _Customer,
        inv_id: str,
        lines: list[Obj],
        created: int,
        sub_id: str | None,
        state: str,
        reason: str,
        attempts: int | None = None,
    ) -> Obj:
        """Stores an invoice whose totals agree with its lines (subtotal - discounts); maybe a credit note."""
        inv = builders.invoice(
            inv_id,
            ctx.cid,
            lines,
            status=state,
            created=created,
            subscription=sub_id,
            billing_reason=reason,
            attempt_count=attempts,
            next_payment_attempt=created + 3 * DAY if state == "open" else None,
        )
        discounts = sum(d["amount"] for line in lines for d in line["discount_amounts"])
        total = inv["subtotal"] - discounts
        inv["total_discount_amounts"] = [{"amount": discounts, "discount": "di_coupon"}] if discounts else []
        inv["total"] = inv["amount_due"] = total
        inv["amount_paid"] = total if state == "paid" else 0
        inv["amount_remaining"] = 0 if state == "paid" else total
        if state == "draft":
            inv["attempt_count"] = 0
        inv["status_transitions"] = self.transitions(created, state, inv["attempt_count"])
        self.world.add(inv)
        if state == "paid" and total > 0 and self.rng.random() < 0.012:
            when = min(created + self.rng.randint(2, 20) * DAY, self.end)
            note = builders.credit_note(
                self.next_id("cn"), inv_id, ctx.cid, total * self.rng.randint(10, 50) // 100, created=when
            )
            self.world.add(note)
        return inv

    def transitions(self, created: int, state: str, attempts: int) -> Obj:
        """When the invoice was finalized, paid (after some days when the first attempt failed), voided or
        written off: what lets the at-risk signals date each state."""
        out: Obj = {"finalized_at": None, "paid_at": None, "voided_at": None, "marked_uncollectible_at": None}
        if state == "draft":
            return out
        finalized = created + FINALIZE_AFTER
        out["finalized_at"] = finalized
        if state == "paid":
            out["paid_at"] = finalized + (self.rng.randint(1, 7) * DAY if attempts > 1 else 0)
        elif state == "void":
            out["voided_at"] = finalized + self.rng.randint(1, 10) * DAY
        elif state == "uncollectible":
            out["marked_uncollectible_at"] = finalized + self.rng.randint(20, 30) * DAY
        return out

    def items(self, sub: _Sub, period: tuple[int, int], created: int, incl: bool) -> list[Obj]:
        """The subscription's items as they are now (or were when it ended)."""
        plan_price = self.prices[self.price_id(sub.plan, sub.interval, incl)]
        out = [builders.subscription_item(sub.item_id, sub.id, plan_price, sub.seats, period, created)]
        if sub.metered_item is not None:
            metered = self.prices["price_api_calls" + ("_incl" if incl else "")]
            out.append(builders.subscription_item(sub.metered_item, sub.id, metered, None, period, created))
        for k, item in enumerate(sub.addon_items):
            out.append(
                builders.subscription_item(
                    item, sub.id, self.prices[f"price_addon_{k:02d}"], 1, period, created
                )
            )
        return out

    # -- events ----------------------------------------------------------------------------------------------
    def settle(self, pack: bool) -> None:
        """The objects made since the last call (still dicts) are finished: a few customers billed abroad
        (worker/demo/abroad.py), the changes within the event window noted, and with `pack` the objects
        packed."""
        bill_abroad(self.world)  # a few customers pay in EUR and GBP
        self.note_changes()
        if pack:
            self.world.pack()

    def note_changes(self) -> None:
        """(when, event type, object) for the objects made since the last call: customers, invoices and
        credit notes created in the window, and the subscriptions' changes within it."""
        since = self.end - EVENT_WINDOW_DAYS * DAY
        collections = self.world.collections
        customers, invoices, notes, subscriptions = self.found
        customers.extend(
            (cust["created"], "customer.created", cust)
            for cust in collections["customer"].live.values()
            if since <= cust["created"] <= self.end
        )
        for inv in collections["invoice"].live.values():
            if since <= inv["created"] <= self.end:
                invoices.append((inv["created"], "invoice.created", inv))
                follow = INVOICE_FOLLOW_UP.get(inv["status"])
                if follow:
                    invoices.append((inv["created"], follow, inv))
        notes.extend(
            (note["created"], "credit_note.created", note)
            for note in collections["credit_note"].live.values()
            if since <= note["created"] <= self.end
        )
        subs = collections["subscription"].live
        subscriptions.extend(
            (when, kind, subs[sub_id])
            for when, kind, sub_id in self.changed_subs
            if since <= when <= self.end
        )
        self.changed_subs.clear()

    def events(self) -> None:
        """Events for the changes of the last 30 days, as Stripe keeps them, oldest first in id order."""
        found = [change for changes in self.found for change in changes]
        # a stable sort: changes at the same second keep the order they were found in
        for when, kind, obj in sorted(found, key=lambda f: f[0]):
            self.world.add(builders.event(self.next_id("evt"), kind, obj, when))


@dataclass
class _Customer:
    cid: str
    vat: int
    discount: tuple[int, int | None]
    signed: int  # when the customer was created: the contract and its setup fee
    seasonal: bool = False  # metered usage dips every December


@dataclass
class _Ending:
    """A subscription's status and cancellation fields as they stand at the sample's "now"."""

    status: str
    cancel_at_period_end: bool = False
    cancel_at: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None


@dataclass(frozen=True)
class _Charge:
    """What one subscription line bills: `quantity` of a subscription item at `price` over `period`."""

    amount: int
    period: tuple[int, int]
    price: Obj
    item: str
    quantity: int | None
    proration: bool = False
    description: str | None = None
