"""At-risk accounts and the churn post-mortem for one connected account: stored rows in, payloads out.

The signal rules live in metrics/at_risk.py; this module only loads what they need (ledger lines, stored
Stripe subscriptions, invoices and meter summaries) into its plain records, once per call and grouped per
customer, and shapes the `retention at-risk --json` / `retention churned --json` payloads (shared/CLI.md).
No Stripe call happens here except in `refresh_meter_usage`, which the alert run calls before it looks
for risk.
"""

from __future__ import annotations

from calendar import monthrange
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from integrations.slack.digest import AlertItem
from integrations.stripe.client import StripeReader
from integrations.stripe.meters import MeterUsage, fetch_meter_summaries
from integrations.stripe.models import (
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
    SyncState,
)
from metrics.at_risk import (
    CustomerRecords,
    InvoiceState,
    LicensedLine,
    RiskAssessment,
    SubscriptionState,
    UsagePeriod,
    UsageSeries,
    assess,
    day_of,
    first_signal_day,
    rank,
    ts,
)
from metrics.ledger import ClassifiedLine
from metrics.money import json_amount
from worker.accounts import stripe_config
from worker.models import Account
from worker.mrr_queries import mrr_at
from worker.settings import Settings

DASHBOARD = "https://dashboard.stripe.com"
CHURN_WINDOW_MONTHS = 6
CHURNED_TOP = 5
METER_PERIODS = 4  # the last full period and the three before it
CURRENT_SLACK = 86400  # `--as-of DATE` is 00:00 that day; a sync later that day still describes it


def is_test_mode(account: Account) -> bool:
    """Test-mode keys link to the test dashboard; the key's prefix wins over the stored livemode flag."""
    if account.key_mask.startswith(("sk_live_", "rk_live_")):
        return False
    if account.key_mask.startswith(("sk_test_", "rk_test_")):
        return True
    return not account.livemode


def dashboard_url(account: Account, customer_id: str) -> str:
    return f"{DASHBOARD}{'/test' if is_test_mode(account) else ''}/customers/{customer_id}"


# -- loading ---------------------------------------------------------------------------------------
def _names(session: Session, account_id: int) -> dict[str, str]:
    rows = session.exec(select(StripeCustomer).where(StripeCustomer.account_id == account_id))
    return {c.id: c.name or c.email or c.id for c in rows}


def _prices(session: Session, account_id: int) -> tuple[dict[str, StripePrice], dict[str, str]]:
    prices = {p.id: p for p in session.exec(select(StripePrice).where(StripePrice.account_id == account_id))}
    products = {
        p.id: p.name or p.id
        for p in session.exec(select(StripeProduct).where(StripeProduct.account_id == account_id))
    }
    return prices, products


def _subscriptions(
    session: Session, account_id: int, prices: dict[str, StripePrice]
) -> dict[str, list[SubscriptionState]]:
    items: dict[str, list[StripeSubscriptionItem]] = defaultdict(list)
    query = select(StripeSubscriptionItem).where(StripeSubscriptionItem.account_id == account_id)
    for item in session.exec(query):
        items[item.subscription_id].append(item)
    out: dict[str, list[SubscriptionState]] = defaultdict(list)
    for sub in session.exec(select(StripeSubscription).where(StripeSubscription.account_id == account_id)):
        mine = items.get(sub.id, [])
        intervals = {prices[i.price_id].interval for i in mine if i.price_id in prices}
        item_end = max((i.current_period_end or 0 for i in mine), default=0) or None
        period_end = sub.current_period_end or item_end
        out[sub.customer_id].append(
            SubscriptionState(
                sub.id,
                sub.status,
                sub.created,
                period_end,
                sub.cancel_at_period_end,
                sub.cancel_at,
                sub.canceled_at,
                sub.ended_at,
                "year" if "year" in intervals else next(iter(intervals), None),
            )
        )
    return out


def _resolved_at(raw: dict[str, Any]) -> int | None:
    transitions = raw.get("status_transitions") or {}
    value = transitions.get("paid_at") or transitions.get("voided_at")
    return int(value) if value else None


def _invoices(session: Session, account_id: int) -> dict[str, list[InvoiceState]]:
    out: dict[str, list[InvoiceState]] = defaultdict(list)
    kept = ("open", "paid", "uncollectible", "void")
    query = select(StripeInvoice).where(
        StripeInvoice.account_id == account_id, col(StripeInvoice.status).in_(kept)
    )
    for inv in session.exec(query):
        if inv.customer_id is None:
            continue
        out[inv.customer_id].append(
            InvoiceState(
                inv.id,
                inv.status or "",
                inv.created or 0,
                inv.attempt_count,
                inv.amount_due or 0,
                inv.currency or "usd",
                _resolved_at(inv.raw or {}),
            )
        )
    return out


def _lines(
    session: Session, account_id: int, prices: dict[str, StripePrice], products: dict[str, str]
) -> tuple[dict[str, list[LicensedLine]], dict[str, list[UsageSeries]], dict[str, set[str]]]:
    """Recurring ledger lines: licensed ones with quantity and discount, metered ones as usage series
    (and, per customer, the meters whose usage is already seen on billed lines)."""
    quantities: dict[str, tuple[int | None, int]] = {
        line.id: (line.quantity, line.discount_total)
        for line in session.exec(select(StripeInvoiceLine).where(StripeInvoiceLine.account_id == account_id))
    }
    item_qty = {
        i.id: i.quantity
        for i in session.exec(
            select(StripeSubscriptionItem).where(StripeSubscriptionItem.account_id == account_id)
        )
    }
    licensed: dict[str, list[LicensedLine]] = defaultdict(list)
    usage: dict[tuple[str, str], list[UsagePeriod]] = defaultdict(list)
    labels: dict[tuple[str, str], str] = {}
    billed_meters: dict[str, set[str]] = defaultdict(set)
    query = select(ClassifiedLine).where(
        ClassifiedLine.account_id == account_id, ClassifiedLine.klass == "recurring"
    )
    for line in session.exec(query):
        if not line.counted and line.excluded_reason != "missing_rate":
            continue
        label = products.get(line.product_id or "", line.product_id or line.price_id or "plan")
        upcoming = line.line_id.startswith("upcoming:")
        qty, discount = quantities.get(line.line_id, (None, 0))
        if upcoming:
            qty = item_qty.get(line.subscription_item_id or "")
        key = line.subscription_item_id or line.price_id or line.line_id
        if line.usage_type == "metered":
            if not upcoming:  # carried-forward usage is not usage
                used = float(qty if qty is not None else line.net_amount)
                usage[(line.customer_id, key)].append(UsagePeriod(line.period_start, line.period_end, used))
                labels[(line.customer_id, key)] = label
                meter = prices[line.price_id].meter_id if line.price_id in prices else None
                if meter:
                    billed_meters[line.customer_id].add(meter)
            continue
        price = prices.get(line.price_id or "")
        licensed[line.customer_id].append(
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
            )
        )
    series: dict[str, list[UsageSeries]] = defaultdict(list)
    for (customer, key), periods in usage.items():
        series[customer].append(UsageSeries(key, labels[(customer, key)], "billed", tuple(periods)))
    return licensed, series, billed_meters


def _meter_usage(
    session: Session, account_id: int, prices: dict[str, StripePrice], products: dict[str, str]
) -> dict[str, list[UsageSeries]]:
    labels = {p.meter_id: products.get(p.product_id or "", p.meter_id) for p in prices.values() if p.meter_id}
    grouped: dict[tuple[str, str], list[UsagePeriod]] = defaultdict(list)
    for row in session.exec(select(MeterUsage).where(MeterUsage.account_id == account_id)):
        grouped[(row.customer_id, row.meter_id)].append(
            UsagePeriod(row.start_time, row.end_time, row.aggregated_value)
        )
    out: dict[str, list[UsageSeries]] = defaultdict(list)
    for (customer, meter), periods in grouped.items():
        out[customer].append(UsageSeries(meter, labels.get(meter) or meter, "meter", tuple(periods)))
    return out


def load_records(engine: Engine, account: Account, mrr: dict[str, int]) -> list[CustomerRecords]:
    """The signal inputs of the customers in `mrr` (customer id -> MRR in reporting minor units).

    A meter whose usage also shows on billed lines is judged on the billed lines only (the same usage twice
    would only repeat the signal).
    """
    account_id = account.id or 0
    with Session(engine) as session:
        names = _names(session, account_id)
        prices, products = _prices(session, account_id)
        subs = _subscriptions(session, account_id, prices)
        invoices = _invoices(session, account_id)
        licensed, billed, billed_meters = _lines(session, account_id, prices, products)
        metered = _meter_usage(session, account_id, prices, products)
    return [
        CustomerRecords(
            cid,
            names.get(cid, cid),
            amount,
            account.reporting_currency,
            tuple(subs.get(cid, ())),
            tuple(invoices.get(cid, ())),
            tuple(billed.get(cid, []))
            + tuple(s for s in metered.get(cid, []) if s.key not in billed_meters.get(cid, ())),
            tuple(licensed.get(cid, ())),
        )
        for cid, amount in mrr.items()
    ]


# -- at risk ---------------------------------------------------------------------------------------
def paying(engine: Engine, account: Account, as_of: datetime) -> dict[str, int]:
    with engine.connect() as conn:
        return {c.customer_id: c.mrr for c in mrr_at(conn, account.id or 0, as_of)}


def is_current(engine: Engine, account: Account, as_of: datetime) -> bool:
    """Whether `as_of` is late enough for the stored state (status, cancel flags) to describe it.

    Stored subscriptions say how things stood at the last sync; a date more than a day before it is judged
    on dated evidence only (metrics/at_risk.py), so `--as-of` a year ago does not flag today's past_due.
    """
    with Session(engine) as session:
        state = session.get(SyncState, account.id)
    synced = state.last_sync_at if state is not None else None
    return synced is None or ts(as_of) >= synced - CURRENT_SLACK


def assess_records(records: list[CustomerRecords], as_of: datetime, current: bool) -> list[RiskAssessment]:
    return rank(assess(r, as_of, current) for r in records)


def assess_account(engine: Engine, account: Account, as_of: datetime) -> list[AlertItem]:
    """Every paying customer with a signal at `as_of`, highest score first, with its dashboard link."""
    records = load_records(engine, account, paying(engine, account, as_of))
    ranked = assess_records(records, as_of, is_current(engine, account, as_of))
    return [AlertItem(a, dashboard_url(account, a.customer_id)) for a in ranked]


def _signals(assessment: RiskAssessment) -> list[dict[str, str]]:
    return [{"code": s.code, "detail": s.detail} for s in assessment.signals]


def account_entry(item: AlertItem) -> dict[str, Any]:
    a = item.assessment
    return {
        "customer_id": a.customer_id,
        "name": a.name,
        "mrr": json_amount(a.mrr, a.currency),
        "signals": _signals(a),
        "renewal_date": a.renewal_date.isoformat() if a.renewal_date else None,
        "dashboard_url": item.dashboard_url,
        "score": a.score,
    }


def at_risk(engine: Engine, account: Account, as_of: datetime) -> dict[str, Any]:
    """The `retention at-risk --json` payload (shared/CLI.md), plus the currency and the total at risk."""
    items = assess_account(engine, account, as_of)
    total = sum(i.assessment.mrr for i in items)
    return {
        "as_of": as_of.date().isoformat(),
        "currency": account.reporting_currency,
        "mrr_at_risk": json_amount(total, account.reporting_currency),
        "accounts": [account_entry(i) for i in items],
    }


# -- churn post-mortem -----------------------------------------------------------------------------
def _months_back(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the 31st becomes the month's last day)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    return moment.replace(year=year, month=month + 1, day=min(moment.day, monthrange(year, month + 1)[1]))


def churned_customers(engine: Engine, account: Account, as_of: datetime) -> dict[str, tuple[int, int]]:
    """Customers whose last subscription ended in the last 6 months and who pay nothing at `as_of`.

    Returns customer id -> (churn instant, MRR just before it).
    """
    start, end = ts(_months_back(as_of, CHURN_WINDOW_MONTHS)), ts(as_of)
    with Session(engine) as session:
        query = select(StripeSubscription).where(StripeSubscription.account_id == account.id)
        subs = list(session.exec(query))
    by_customer: dict[str, list[StripeSubscription]] = defaultdict(list)
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
            before = {
                c.customer_id: c.mrr
                for c in mrr_at(conn, account.id or 0, datetime.fromtimestamp(instant - 1, UTC))
            }
            for customer, when in ended.items():
                if when == instant and before.get(customer, 0) > 0:
                    out[customer] = (instant, before[customer])
    return out


def churned(engine: Engine, account: Account, as_of: datetime | None = None) -> dict[str, Any]:
    """The `retention churned --json` payload: the 5 largest churned accounts of the last 6 months, each with
    the day its first risk signal appeared (signals evaluated over stored history) and the warning it gave."""
    as_of = as_of or datetime.now(UTC)
    lost = churned_customers(engine, account, as_of)
    top = sorted(lost.items(), key=lambda kv: (-kv[1][1], kv[0]))[:CHURNED_TOP]
    records = {r.customer_id: r for r in load_records(engine, account, {c: m for c, (_, m) in top})}
    entries = []
    for customer, (instant, mrr) in top:
        churn_day = day_of(instant)
        last_day = day_of(instant - 1)
        first = first_signal_day(records[customer], last_day)
        signals: list[dict[str, str]] = []
        if first is not None:
            found = assess(
                records[customer], datetime(first.year, first.month, first.day, tzinfo=UTC), current=False
            )
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
    with Session(engine) as session:
        prices = {
            p.id: p
            for p in session.exec(
                select(StripePrice).where(
                    StripePrice.account_id == account.id, col(StripePrice.meter_id).is_not(None)
                )
            )
        }
        if not prices:
            return []
        subs = {
            s.id: s
            for s in session.exec(
                select(StripeSubscription).where(
                    StripeSubscription.account_id == account.id,
                    col(StripeSubscription.status).in_(("active", "past_due", "unpaid", "trialing")),
                )
            )
        }
        items = list(
            session.exec(
                select(StripeSubscriptionItem).where(
                    StripeSubscriptionItem.account_id == account.id,
                    col(StripeSubscriptionItem.price_id).in_(prices),
                )
            )
        )
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
    end = datetime.fromtimestamp(start, UTC)
    return [(ts(_months_back(end, n + 1)), ts(_months_back(end, n))) for n in range(count)]


def refresh_meter_usage(engine: Engine, settings: Settings, account: Account) -> int:
    """Read the last full periods' meter summaries of every live metered item; returns summaries stored.

    Raises integrations.stripe.client.StripeReadError when Stripe keeps failing (the caller records it).
    """
    wanted = metered_items(engine, account)
    if not wanted:
        return 0
    reader = StripeReader(stripe_config(settings, account))
    stored = 0
    with Session(engine) as session:
        for customer, meter, start, length, interval in wanted:
            for begin, end in _periods_before(start, length, interval, METER_PERIODS):
                summaries = fetch_meter_summaries(reader, meter, customer, begin, end)
                total = sum(s.aggregated_value for s in summaries)
                row = session.get(MeterUsage, (account.id, meter, customer, begin))
                if row is None:
                    row = MeterUsage(
                        account_id=account.id or 0,
                        meter_id=meter,
                        customer_id=customer,
                        start_time=begin,
                        end_time=end,
                        aggregated_value=total,
                    )
                row.end_time, row.aggregated_value = end, total
                session.add(row)
                stored += 1
        session.commit()
    return stored
