"""At-risk accounts and the churn post-mortem for one connected account: stored rows in, payloads out.

The signal rules live in metrics/at_risk.py; this module only loads what they need (ledger lines, stored
Stripe subscriptions, invoices and meter summaries) into its plain records, a batch of customers at a time
(each customer's whole history, so the same records can be judged at any instant), and shapes the
`retention at-risk --json` / `retention churned --json` payloads (README). `evaluate_customers` judges any set
of customers at an instant: the at-risk run, the alerts and the same-day watch call it. The
rows come from the repositories (integrations/stripe/repository/risk.py for stored Stripe objects,
worker/mrr_queries.py for the ledger), so nothing here builds SQL. No Stripe call happens here except in
`refresh_meter_usage`, which the alert run calls before it looks for risk. `present_assessments` (the at-risk
list, the digest, the report) reads back the verdicts kept in worker/risk_store.py that still hold and judges
only the other customers (docs/at-risk.md, Stored verdicts).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Engine

from integrations.stripe import changes
from integrations.stripe.client import StripeReader
from integrations.stripe.meters import fetch_meter_summaries
from integrations.stripe.repository import billing
from integrations.stripe.repository import risk as stored
from integrations.stripe.repository.customers import customer_names
from integrations.stripe.repository.risk import MeterUsageRow, PriceRow, SubscriptionRow
from integrations.stripe.repository.sync_state import last_sync_at
from metrics.at_risk import (
    AtRiskAccount,
    CustomerRecords,
    InvoiceState,
    LicensedLine,
    RevenueLine,
    RiskAssessment,
    SubscriptionState,
    Thresholds,
    TrackRecord,
    UsagePeriod,
    UsageSeries,
    assess,
    evaluate,
    first_signal_day,
    next_change,
    rank,
    redated,
)
from metrics.at_risk import mrr_at as mrr_of
from metrics.calendar import day_start, moment_ts, months_back, utc_datetime, utc_day, utc_now
from metrics.cycles import without_cycle_collection
from metrics.dbapi import reader_of
from metrics.money import json_amount
from worker import derived_store
from worker.accounts import stripe_config
from worker.backtest_store import stored_track_records
from worker.models import Account
from worker.mrr_queries import RecurringLine, mrr_at, paying_customers, revenue_customers, risk_lines
from worker.risk_settings import risk_thresholds
from worker.risk_store import (
    FOREVER,
    Forgotten,
    StoredVerdict,
    basis_key,
    epoch,
    forget,
    from_json,
    save_verdicts,
    to_json,
    verdicts,
)
from worker.settings import Settings

DASHBOARD = "https://dashboard.stripe.com"
CHURN_WINDOW_MONTHS = 6
CHURNED_TOP = 5
METER_PERIODS = 4  # the last full period and the three before it
BATCH = 500  # customers read at once: bounded memory, few enough round trips
AHEAD = 2 * 86_400  # a kept verdict ending sooner than this after its judging is followed by the next one
CURRENT_SLACK = 86400  # `--as-of DATE` is 00:00 that day; a sync later that day still describes it
INVOICE_STATUSES = ("open", "paid", "uncollectible", "void")  # drafts are not yet owed
LIVE_STATUSES = ("active", "past_due", "unpaid", "trialing")  # subscriptions whose meters still bill


def is_test_mode(account: Account) -> bool:
    """Test-mode keys link to the test dashboard; the key's prefix wins over the stored livemode flag."""
    if account.key_mask.startswith(("sk_live_", "rk_live_")):
        return False
    if account.key_mask.startswith(("sk_test_", "rk_test_")):
        return True
    return not account.livemode


def dashboard_url(account: Account, customer_id: str) -> str:
    return f"{DASHBOARD}{'/test' if is_test_mode(account) else ''}/customers/{customer_id}"


# -- loading, per batch of customers -----------------------------------------------------------------
@dataclass(frozen=True)
class Catalog:
    """Prices and product names, and the meters with stored usage: small, read once per run and shared by
    every batch."""

    prices: dict[str, PriceRow]
    products: dict[str, str]
    meters: tuple[str, ...] = ()

    def meter_label(self, meter: str) -> str:
        for p in self.prices.values():
            if p.meter_id == meter:
                return self.products.get(p.product_id or "", meter)
        return meter


def read_catalog(engine: Engine, account: Account) -> Catalog:
    with engine.connect() as conn:
        prices = {p.id: p for p in stored.prices(conn, account.id or 0)}
        products = {p.id: p.name or p.id for p in stored.products(conn, account.id or 0)}
        meters = tuple(stored.usage_meters(conn, account.id or 0))
    return Catalog(prices, products, meters)


def _subscriptions(
    subs: list[SubscriptionRow], prices: dict[str, PriceRow], all_items: list[billing.PricedItem]
) -> dict[str, list[SubscriptionState]]:
    items: dict[str, list[billing.PricedItem]] = defaultdict(list)
    for item in all_items:
        items[item.subscription_id].append(item)
    out: dict[str, list[SubscriptionState]] = defaultdict(list)
    for sub in subs:
        mine = items.get(sub.id, [])
        intervals = {prices[i.price_id].interval for i in mine if i.price_id in prices}
        item_end = max((i.current_period_end or 0 for i in mine), default=0) or None
        out[sub.customer_id].append(
            SubscriptionState(
                sub.id,
                sub.status,
                sub.created,
                sub.current_period_end or item_end,
                sub.cancel_at_period_end,
                sub.cancel_at,
                sub.canceled_at,
                sub.ended_at,
                "year" if "year" in intervals else next(iter(intervals), None),
            )
        )
    return out


def _invoices(rows: list[stored.InvoiceRow]) -> dict[str, list[InvoiceState]]:
    out: dict[str, list[InvoiceState]] = defaultdict(list)
    for inv in rows:
        out[inv.customer_id].append(
            InvoiceState(
                inv.id,
                inv.status or "",
                inv.created or 0,
                inv.attempt_count,
                inv.amount_due or 0,
                inv.currency or "usd",
                inv.resolved_at,
                inv.finalized_at,
            )
        )
    return out


@dataclass
class _Lines:
    """One batch's recurring ledger lines, sorted into what each signal reads."""

    licensed: dict[str, list[LicensedLine]] = field(default_factory=lambda: defaultdict(list))
    usage: dict[str, dict[str, list[UsagePeriod]]] = field(default_factory=lambda: defaultdict(dict))
    labels: dict[tuple[str, str], str] = field(default_factory=dict)
    billed_meters: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    revenue: dict[str, list[RevenueLine]] = field(default_factory=lambda: defaultdict(list))

    def series(self, customer: str) -> list[UsageSeries]:
        return [
            UsageSeries(key, self.labels[(customer, key)], "billed", tuple(sorted(p, key=lambda u: u.end)))
            for key, p in self.usage.get(customer, {}).items()
        ]


def _lines(
    rows: list[RecurringLine],
    catalog: Catalog,
    items: dict[str, int | None],
) -> _Lines:
    """Licensed lines with quantity and discount, metered ones as usage periods, counted ones as revenue."""
    out = _Lines()
    for line in rows:
        if line.counted and line.monthly_reporting is not None:
            out.revenue[line.customer_id].append(
                RevenueLine(line.period_start, line.mrr_end, line.monthly_reporting)
            )
        label = catalog.products.get(line.product_id or "", line.product_id or line.price_id or "plan")
        upcoming = line.line_id.startswith("upcoming:")
        qty, discount = line.quantity, line.discount_total
        if upcoming:
            qty = items.get(line.subscription_item_id or "")
        key = line.subscription_item_id or line.price_id or line.line_id
        if line.usage_type == "metered":
            if not upcoming:  # carried-forward usage is not usage
                used = float(qty if qty is not None else line.net_amount)
                period = UsagePeriod(line.period_start, line.period_end, used)
                out.usage[line.customer_id].setdefault(key, []).append(period)
                out.labels[(line.customer_id, key)] = label
                price = catalog.prices.get(line.price_id or "")
                if price is not None and price.meter_id:
                    out.billed_meters[line.customer_id].add(price.meter_id)
            continue
        price = catalog.prices.get(line.price_id or "")
        out.licensed[line.customer_id].append(
            LicensedLine(
                key,
                label,
                line.price_id,
                line.period_start,
                line.mrr_end or line.period_end,
                qty,
                line.monthly_amount,
                line.currency,
                discount,
                price.interval if price else None,
                None if upcoming else line.invoiced_at,
            )
        )
    return out


def _meter_series(rows: list[MeterUsageRow], catalog: Catalog) -> dict[str, list[UsageSeries]]:
    grouped: dict[tuple[str, str], list[UsagePeriod]] = defaultdict(list)
    for row in rows:
        grouped[(row.customer_id, row.meter_id)].append(
            UsagePeriod(row.start_time, row.end_time, row.aggregated_value)
        )
    out: dict[str, list[UsageSeries]] = defaultdict(list)
    for (customer, meter), periods in grouped.items():
        ordered = tuple(sorted(periods, key=lambda u: u.end))
        out[customer].append(UsageSeries(meter, catalog.meter_label(meter), "meter", ordered))
    return out


def _batch(
    conn: Connection, account: Account, customers: list[str], catalog: Catalog, at: int
) -> list[CustomerRecords]:
    """The signal inputs of one batch of customers, their whole history, MRR taken at `at`.

    A meter whose usage also shows on billed lines is judged on the billed lines only (the same usage twice
    would only repeat the signal).
    """
    account_id = account.id or 0
    names = {c.id: c.name or c.email or c.id for c in customer_names(conn, account_id, customers)}
    sub_rows = stored.subscriptions(conn, account_id, customer_ids=customers)
    items = billing.subscription_items(conn, account_id, subscription_ids=[s.id for s in sub_rows])
    subs = _subscriptions(sub_rows, catalog.prices, items)
    invoices = _invoices(stored.failable_invoices(conn, account_id, INVOICE_STATUSES, customers))
    lines = _lines(risk_lines(conn, account_id, customers), catalog, {i.id: i.quantity for i in items})
    metered = _meter_series(stored.meter_usage(conn, account_id, customers, catalog.meters), catalog)
    out = []
    for cid in customers:
        revenue = tuple(lines.revenue.get(cid, ()))
        usage = lines.series(cid) + [
            s for s in metered.get(cid, []) if s.key not in lines.billed_meters.get(cid, ())
        ]
        out.append(
            CustomerRecords(
                cid,
                names.get(cid, cid),
                mrr_of(revenue, at),
                account.reporting_currency,
                tuple(subs.get(cid, ())),
                tuple(invoices.get(cid, ())),
                tuple(usage),
                tuple(lines.licensed.get(cid, ())),
                revenue,
            )
        )
    return out


def iter_records(
    engine: Engine,
    account: Account,
    customers: Sequence[str],
    at: int,
    batch: int = BATCH,
    catalog: Catalog | None = None,
) -> Iterator[CustomerRecords]:
    """The records of these customers, read `batch` customers at a time (never the whole account at once)."""
    if not customers:
        return
    catalog = catalog or read_catalog(engine, account)
    for n in range(0, len(customers), batch):
        with engine.connect() as conn:
            found = _batch(conn, account, list(customers[n : n + batch]), catalog, at)
        yield from found


def customer_display_names(engine: Engine, account: Account, customers: Sequence[str]) -> dict[str, str]:
    """Name (else email, else id) of a few customers, e.g. those an alert run reports as recovered."""
    if not customers:
        return {}
    with engine.connect() as conn:
        rows = customer_names(conn, account.id or 0, list(customers))
    return {c.id: c.name or c.email or c.id for c in rows}


def customers_paying_between(engine: Engine, account: Account, first: int, last: int) -> list[str]:
    """Customers with a counted recurring line over [first, last] (a superset of those paying then)."""
    with engine.connect() as conn:
        return revenue_customers(conn, account.id or 0, first, last)


def load_records(engine: Engine, account: Account, mrr: dict[str, int]) -> list[CustomerRecords]:
    """The signal inputs of a few named customers (customer id -> MRR to judge them with)."""
    found = {r.customer_id: r for r in iter_records(engine, account, sorted(mrr), moment_ts(utc_now()))}
    return [replace(found[cid], mrr=amount) for cid, amount in mrr.items() if cid in found]


# -- at risk ---------------------------------------------------------------------------------------
def paying(engine: Engine, account: Account, as_of: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        return {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, as_of)}


def paying_among(engine: Engine, account: Account, as_of: datetime, customers: Collection[str]) -> set[str]:
    """Those of these customers who pay at `as_of` (MRR above 0), as `paying` would say, asked of a few."""
    with engine.connect() as conn:
        return paying_customers(conn, account.id or 0, as_of, customers)


def is_current(engine: Engine, account: Account, as_of: datetime) -> bool:
    """Whether `as_of` is late enough for the stored state (status, cancel flags) to describe it.

    Stored subscriptions say how things stood at the last sync (for rows stored without one, at the newest
    invoice); a date more than a day before it is judged on dated evidence only (metrics/at_risk.py), so
    `--as-of` a year ago does not flag today's past_due.
    """
    return describes(described_at(engine, account), as_of)


def described_at(engine: Engine, account: Account) -> int | None:
    """The instant the stored state describes: the last sync, else (rows stored without one) the newest
    invoice's creation; None when nothing is stored."""
    with engine.connect() as conn:
        described = last_sync_at(reader_of(conn), account.id or 0)
        if described is None:
            described = stored.newest_invoice_created(conn, account.id or 0)
    return described


def describes(described: int | None, as_of: datetime) -> bool:
    """`is_current` with the described instant read once (the backtest asks for twelve points)."""
    return described is None or moment_ts(as_of) >= described - CURRENT_SLACK


def evaluate_customers(
    engine: Engine,
    account: Account,
    customers: Sequence[str],
    as_of: datetime,
    thresholds: Thresholds | None = None,
) -> list[RiskAssessment]:
    """These customers' assessments at `as_of` (point in time), ranked: the one entry point for judging a
    set of customers at an instant (the at-risk run passes every paying customer, the watch a few)."""
    th = thresholds or risk_thresholds()
    return _judged_afresh(
        engine, account, customers, moment_ts(as_of), is_current(engine, account, as_of), th
    )


def _judged_afresh(
    engine: Engine, account: Account, customers: Sequence[str], at: int, current: bool, th: Thresholds
) -> list[RiskAssessment]:
    """`evaluate_customers` with the instant's currency known: every customer read and judged, ranked."""
    with without_cycle_collection():
        found = [evaluate(r, at, r.mrr, current, th) for r in iter_records(engine, account, customers, at)]
    return rank(found)


def verdict_basis(account: Account, catalog: Catalog, th: Thresholds, current: bool) -> str:
    """What every stored verdict depends on besides the customer's own history (worker/risk_store.py): the
    thresholds, the reporting currency, the catalog (labels and intervals in the details) and whether the
    stored state describes the instant."""
    prices = sorted(catalog.prices.values())
    return basis_key(th, account.reporting_currency, prices, sorted(catalog.products.items()), current)


def stale_customers(conn: Connection, account_id: int) -> set[str] | None:
    """Customers whose stored objects a sync changed since the last rebuild (None: possibly every one).

    The rebuild forgets the verdicts of the customers it recomputes; until it runs, these are judged again."""
    found = changes.pending(conn, account_id)
    if found.all:
        return None
    return found.customers | billing.customers_on(conn, account_id, found.prices, found.products)


def kept_verdict(
    records: CustomerRecords, at: int, found: RiskAssessment | None, th: Thresholds, basis: str
) -> StoredVerdict:
    """The verdict as stored: until when it holds, records unchanged, and the basis it is read back under.

    Until the next turning point of a rule (metrics.at_risk.next_change). A customer at risk with a downgrade
    is kept to the next day start at most: the downgrade may name the lookback's first day as its peak's,
    which moves each day. Any other customer at risk is kept to its turning point under `redating(basis)`:
    read back, its renewal_soon days left are counted again for the day (metrics.at_risk.redated), the only
    text of its signals that follows the calendar day.
    """
    if found is None:
        return StoredVerdict(basis, at, next_change(records, at, th, signals=False) or FOREVER, found)
    if "downgrade" in found.codes:
        day_end = moment_ts(day_start(utc_day(at) + timedelta(days=1)))
        return StoredVerdict(basis, at, next_change(records, at, th, before=day_end) or day_end, found)
    return StoredVerdict(redating(basis), at, next_change(records, at, th) or FOREVER, found)


def judged_ahead(
    records: CustomerRecords, kept: StoredVerdict, current: bool, th: Thresholds, basis: str
) -> StoredVerdict:
    """`kept` with the verdict that follows it when it ends within AHEAD of its judging: judged at the
    instant it ends, from the same records, and kept as `kept_verdict` keeps any.

    Whatever the next night reads of a customer whose verdict ended is what it would judge it from, so the
    verdict that follows can be judged now, from the records already read: most of the cost of judging is
    reading the history. Verdicts that end within a day or two are common: a customer at risk with a
    downgrade is kept to the next day start, and on the 2nd of a 31-day month every monthly renewal on the
    1st enters the 30-day renewal window at once (nine in ten of the customers at risk were judged again
    that night, at 20,000 customers). The stored state describes that instant as well as `at` (the basis
    is the same), and the MRR is taken there, as a judge then would take it."""
    if kept.valid_until - kept.judged_at >= AHEAD:
        return kept
    then = kept.valid_until
    found = evaluate(records, then, mrr_of(records.revenue, then), current, th)
    return replace(kept, then=kept_verdict(records, then, found, th, basis))


def read_back(held: StoredVerdict, basis: str, at: int) -> tuple[bool, RiskAssessment | None]:
    """Whether a stored verdict holds at `at` under `basis`, and the assessment it gives there: as judged,
    `redated` for one kept past its day (`kept_verdict`), or as the verdict judged ahead gives it."""
    if held.holds(basis, at):
        return True, held.assessment
    if held.assessment is not None and held.holds(redating(basis), at):
        return True, redated(held.assessment, at)
    if held.then is not None:
        return read_back(held.then, basis, at)
    return False, None


def redating(basis: str) -> str:
    """The basis of a verdict kept past its day, read back `redated`: distinct from the basis itself, so a
    version of this code that does not redate judges such a verdict afresh instead of showing stale days."""
    return basis_key(basis, "redated")


def present_assessments(
    engine: Engine, account: Account, as_of: datetime, thresholds: Thresholds | None = None
) -> list[RiskAssessment]:
    """Every paying customer with a signal at `as_of`, ranked: what `evaluate_customers` gives over every
    paying customer, reusing the stored verdicts that still hold (docs/at-risk.md, Stored verdicts).

    Only when the stored state describes `as_of` (a replay of a past day is judged afresh and not stored):
    a customer is judged again when its history changed (forgotten by the rebuild, or noted by a sync not
    yet rebuilt), when a rule's turning point was passed since its verdict, or under another basis.
    The ranked list itself is kept for its instant (`listed_at_risk`): the at-risk list, the digest and the
    report of one night ask for the same one.
    """
    th = thresholds or risk_thresholds()
    at, current = moment_ts(as_of), is_current(engine, account, as_of)
    if not current:
        return _judged_afresh(
            engine, account, customers_paying_between(engine, account, at, at), at, current, th
        )
    catalog = read_catalog(engine, account)
    basis = verdict_basis(account, catalog, th, current)
    listing = f"{derived_store.FORMAT}:{basis}:{at}"
    with engine.connect() as conn:
        since = epoch(conn, account.id or 0)  # read before anything it judges
        stale = stale_customers(conn, account.id or 0)
        listed = listed_at_risk(conn, account.id or 0, listing, since) if stale == set() else None
        if listed is not None:
            return listed
        stored_verdicts = verdicts(conn, account.id or 0) if stale is not None else {}
    customers = customers_paying_between(engine, account, at, at)
    found: list[RiskAssessment | None] = []
    judge: list[str] = []
    for cid in customers:
        held = stored_verdicts.get(cid)
        if held is None or cid in (stale or ()):
            judge.append(cid)
        else:
            holds, assessment = read_back(held, basis, at)
            if holds:
                found.append(assessment)
            else:
                judge.append(cid)
    fresh: list[tuple[str, StoredVerdict]] = []
    with without_cycle_collection():
        for records in iter_records(engine, account, judge, at, catalog=catalog):
            verdict = evaluate(records, at, records.mrr, current, th)
            kept = kept_verdict(records, at, verdict, th, basis)
            fresh.append((records.customer_id, judged_ahead(records, kept, current, th, basis)))
            found.append(verdict)
            if len(fresh) >= BATCH:
                _save(engine, account, fresh, since)
                fresh = []
    _save(engine, account, fresh, since)
    ranked = rank(found)
    if stale == set():  # judged from a history no sync has changed since the rebuild
        value = [to_json(a) for a in ranked]
        derived_store.store_figures(engine, account.id or 0, derived_store.AT_RISK, since, {listing: value})
    return ranked


def listed_at_risk(
    conn: Connection, account_id: int, listing: str, since: int
) -> list[RiskAssessment] | None:
    """The ranked list kept for this instant and basis (`listing`), if computed at epoch `since` (None:
    none, or the ledger changed since).

    The list is a function of the verdicts, which hold as long as the epoch (every rebuild that recomputed a
    customer moves it) and the basis do and no sync has changed a customer since the rebuild (the caller
    reads it only then); so a second ask for the same instant reads one row instead of every verdict and
    every paying customer again (2-3 s at 100,000 customers)."""
    now, kept = derived_store.figures(conn, account_id, derived_store.AT_RISK)
    value = kept.get(listing)
    if now != since or value is None:
        return None
    return [from_json(a) for a in value]


def _save(engine: Engine, account: Account, fresh: list[tuple[str, StoredVerdict]], since: int) -> None:
    """Keeps the verdicts, unless a rebuild forgot verdicts meanwhile (then the next run judges them)."""
    if fresh:
        with contextlib.suppress(Forgotten), engine.begin() as conn:
            save_verdicts(conn, account.id or 0, fresh, since)


def assess_account(engine: Engine, account: Account, as_of: datetime) -> list[AtRiskAccount]:
    """Every paying customer with a signal at `as_of`, ranked by score, with its link and track record."""
    ranked = present_assessments(engine, account, as_of)
    return with_links(account, ranked, stored_track_records(engine, account, as_of))


def with_links(
    account: Account, ranked: list[RiskAssessment], track: dict[str, TrackRecord] | None = None
) -> list[AtRiskAccount]:
    """The assessments as the digest and the payloads show them: dashboard link and each signal's track
    record (only signals with enough past cases are in `track`)."""
    track = track or {}
    return [
        AtRiskAccount(a, dashboard_url(account, a.customer_id), {c: track[c] for c in a.codes if c in track})
        for a in ranked
    ]


def _signals(assessment: RiskAssessment, track: dict[str, TrackRecord] | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in assessment.signals:
        record = (track or {}).get(s.code)
        out.append(
            {
                "code": s.code,
                "detail": s.detail,
                "track_record": {"flags": record.flags, "hits": record.hits} if record else None,
            }
        )
    return out


def account_entry(item: AtRiskAccount) -> dict[str, Any]:
    a = item.assessment
    return {
        "customer_id": a.customer_id,
        "name": a.name,
        "mrr": json_amount(a.mrr, a.currency),
        "signals": _signals(a, item.track),
        "renewal_date": a.renewal_date.isoformat() if a.renewal_date else None,
        "dashboard_url": item.dashboard_url,
        "score": a.score,
    }


def at_risk(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The `retention at-risk --json` payload (README), plus the currency and the total at risk."""
    items = assess_account(engine, account, as_of)
    total = sum(i.assessment.mrr for i in items)
    return {
        "as_of": as_of.date().isoformat(),
        "currency": account.reporting_currency,
        "mrr_at_risk": json_amount(total, account.reporting_currency),
        "accounts": [account_entry(i) for i in items],
    }


# -- churn post-mortem -----------------------------------------------------------------------------
def churned_customers(engine: Engine, account: Account, as_of: datetime) -> dict[str, tuple[int, int]]:
    """Customers whose last subscription ended in the last 6 months and who pay nothing at `as_of`.

    Returns customer id -> (churn instant, MRR just before it).
    """
    start, end = moment_ts(months_back(as_of, CHURN_WINDOW_MONTHS)), moment_ts(as_of)
    with engine.connect() as conn:
        subs = stored.subscriptions(conn, account.id or 0)
    by_customer: dict[str, list[SubscriptionRow]] = defaultdict(list)
    for sub in subs:
        by_customer[sub.customer_id].append(sub)
    now_paying = paying(engine, account, as_of)
    ended: dict[str, int] = {}
    for customer, mine in by_customer.items():
        if customer in now_paying or any(s.ended_at is None and s.status != "canceled" for s in mine):
            continue
        last = max((s.ended_at or s.canceled_at or 0) for s in mine)
        if start <= last <= end:
            ended[customer] = last
    out: dict[str, tuple[int, int]] = {}
    with engine.connect() as conn:
        for instant in sorted(set(ended.values())):
            before = {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, utc_datetime(instant - 1))}
            for customer, when in ended.items():
                if when == instant and before.get(customer, 0) > 0:
                    out[customer] = (instant, before[customer])
    return out


def churned(engine: Engine, account: Account, as_of: datetime | None = None) -> dict[str, Any]:
    """The `retention churned --json` payload: the 5 largest churned accounts of the last 6 months, each with
    the day its first risk signal appeared (signals evaluated over stored history) and the warning it gave."""
    as_of = as_of or utc_now()
    lost = churned_customers(engine, account, as_of)
    top = sorted(lost.items(), key=lambda kv: (-kv[1][1], kv[0]))[:CHURNED_TOP]
    records = {r.customer_id: r for r in load_records(engine, account, {c: m for c, (_, m) in top})}
    entries = []
    for customer, (instant, mrr) in top:
        churn_day = utc_day(instant)
        last_day = utc_day(instant - 1)
        first = first_signal_day(records[customer], last_day)
        signals: list[dict[str, str]] = []
        if first is not None:
            found = assess(records[customer], day_start(first), current=False)
            signals = _signals(found) if found else []
        entries.append(
            {
                "customer_id": customer,
                "name": records[customer].name,
                "mrr": json_amount(mrr, account.reporting_currency),
                "churned_on": churn_day.isoformat(),
                "first_signal_on": first.isoformat() if first else None,
                "days_before": (churn_day - first).days if first else None,
                "signals": signals,
                "dashboard_url": dashboard_url(account, customer),
            }
        )
    return {
        "as_of": as_of.date().isoformat(),
        "currency": account.reporting_currency,
        "window_months": CHURN_WINDOW_MONTHS,
        "accounts": entries,
    }


# -- meter summaries -------------------------------------------------------------------------------
def metered_items(engine: Engine, account: Account) -> list[tuple[str, str, int, int, str]]:
    """(customer, meter, current period start, period length, interval) of live items with a metered price."""
    account_id = account.id or 0
    with engine.connect() as conn:
        prices = {p.id: p for p in stored.prices(conn, account_id, metered_only=True)}
        if not prices:
            return []
        subs = {s.id: s for s in stored.subscriptions(conn, account_id, LIVE_STATUSES)}
        items = billing.subscription_items(conn, account_id, price_ids=prices.keys())
    out = []
    for item in items:
        sub = subs.get(item.subscription_id)
        price = prices[item.price_id or ""]
        start = item.current_period_start or (sub.current_period_start if sub else None)
        end = item.current_period_end or (sub.current_period_end if sub else None)
        if sub is None or not start or not end or end <= start:
            continue
        out.append((sub.customer_id, price.meter_id or "", start, end - start, price.interval or "month"))
    return out


def _periods_before(start: int, length: int, interval: str, count: int) -> list[tuple[int, int]]:
    """The `count` full periods before the current one: calendar months for monthly prices."""
    if interval != "month":
        return [(start - (n + 1) * length, start - n * length) for n in range(count)]
    end = utc_datetime(start)
    return [(moment_ts(months_back(end, n + 1)), moment_ts(months_back(end, n))) for n in range(count)]


def refresh_meter_usage(engine: Engine, settings: Settings, account: Account) -> int:
    """Read the last full periods' meter summaries of every live metered item; returns summaries stored.

    Raises integrations.stripe.client.StripeReadError when Stripe keeps failing (the caller records it).
    """
    wanted = metered_items(engine, account)
    if not wanted:
        return 0
    reader = StripeReader(stripe_config(settings, account))
    rows = []
    for customer, meter, start, length, interval in wanted:
        for begin, end in _periods_before(start, length, interval, METER_PERIODS):
            summaries = fetch_meter_summaries(reader, meter, customer, begin, end)
            total = sum(s.aggregated_value for s in summaries)
            rows.append(MeterUsageRow(customer, meter, begin, end, total))
    account_id = account.id or 0
    with engine.begin() as conn:  # only once every period is read: a failed read stores nothing
        before = set(stored.meter_usage(conn, account_id, sorted({r.customer_id for r in rows})))
        stored.save_meter_usage(conn, account_id, rows)
        # usage is evidence: a customer whose summaries changed has its stored verdicts judged again
        forget(conn, account_id, sorted({r.customer_id for r in rows if r not in before}))
    return len(rows)
