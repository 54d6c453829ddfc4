"""The urgent alerts of one watch tick: which touched customers to tell Slack about now, and delivery that
shares the nightly digest's memory (worker/alert_state.py), so nothing is told twice and nothing is lost.

Per customer the tick compares the urgent signals that hold now (U) with the urgent signals of the customer's
open alert, whoever raised it (O):
- U has a signal O lacks, and the customer's MRR is at or above the urgent floor: a new watch alert (the open
  one is closed), pending until Slack accepts it;
- an alert the watch raised that is still pending (Slack was down): sent again while U is unchanged, closed
  unsaid when U changed (the new state is judged afresh);
- a sent watch alert whose signals all cleared (payment succeeded, cancellation withdrawn): a recovery,
  reported once.
Everything else (a partial change, a small account, an alert the digest raised) is left to the nightly digest,
which lists the watch's sent alerts under "already alerted today" (worker/alerts.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from integrations.slack.urgent import SHOWN, Happened, UrgentAlert, UrgentRecovery, build_urgent
from integrations.slack.webhook import post
from metrics.at_risk import CustomerRecords, Signal
from metrics.calendar import utc_now
from worker.accounts import slack_webhook
from worker.alert_state import (
    CLOSED,
    OPEN_STATES,
    PENDING,
    RECOVERED_PENDING,
    SENT,
    WATCH,
    AlertState,
    settle,
    urgent_codes,
)
from worker.db import session_scope
from worker.models import Account
from worker.risk import dashboard_url
from worker.settings import Settings

log = logging.getLogger(__name__)

LIVE = ("active", "trialing", "past_due")
# events after which cleared signals are not a recovery
ENDINGS = (
    "customer.subscription.deleted",
    "customer.deleted",
    "invoice.marked_uncollectible",
    "invoice.voided",
)


@dataclass
class UrgentPlan:
    alerts: list[UrgentAlert] = field(default_factory=list)
    recoveries: list[UrgentRecovery] = field(default_factory=list)
    rows: dict[str, AlertState] = field(default_factory=dict)  # customer -> the row its message settles


def pending_customers(session: Session, account: Account) -> list[str]:
    """Customers with a watch alert or recovery Slack has not accepted yet: every tick tries them again."""
    query = select(AlertState.customer_id).where(
        AlertState.account_id == account.id,
        AlertState.via == WATCH,
        col(AlertState.status).in_((PENDING, RECOVERED_PENDING)),
    )
    return sorted(set(session.exec(query)))


def _open_rows(session: Session, account: Account, customers: Collection[str]) -> dict[str, AlertState]:
    query = select(AlertState).where(
        AlertState.account_id == account.id,
        col(AlertState.status).in_(OPEN_STATES),
        col(AlertState.customer_id).in_(list(customers)),
    )
    return {r.customer_id: r for r in session.exec(query)}


def _happened(row: AlertState | None, fresh: Sequence[Happened]) -> tuple[Happened, ...]:
    """The events behind an alert: this tick's, else those stored with the pending row."""
    if fresh or row is None:
        return tuple(fresh)
    stored = (row.detail or {}).get("happened") or []
    return tuple(Happened(str(t), int(c)) for t, c in stored)


def _new_alert(
    session: Session, account: Account, cid: str, codes: frozenset[str], mrr: int, now: datetime
) -> AlertState:
    fp = "+".join(sorted(codes))
    row = session.get(AlertState, (account.id, cid, fp))
    if row is None:
        row = AlertState(account_id=account.id or 0, customer_id=cid, fingerprint=fp, status=PENDING)
    row.status, row.via, row.mrr, row.updated_at, row.sent_at = PENDING, WATCH, mrr, now, None
    return row


@dataclass(frozen=True)
class Judged:
    """One customer as the tick sees it now."""

    records: CustomerRecords
    signals: tuple[Signal, ...]  # the urgent signals that hold now
    happened: tuple[Happened, ...]  # this tick's events about the customer

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(s.code for s in self.signals)


def plan_urgent(
    session: Session, account: Account, judged: Sequence[Judged], floor: int | None
) -> UrgentPlan:
    """Compare each customer's urgent signals with its open alert and record the new state (see above)."""
    now = utc_now()
    plan = UrgentPlan()
    rows = _open_rows(session, account, [j.records.customer_id for j in judged])
    for item in judged:
        cid, rec = item.records.customer_id, item.records
        told = rows.get(cid)
        row = _judge(session, account, item, told, floor, now)
        if row is None:
            continue
        session.add(row)
        plan.rows[cid] = row
        url = dashboard_url(account, cid)
        happened = _happened(row, item.happened)
        row.detail = {"happened": [[h.type, h.created] for h in happened[-SHOWN:]]}
        if row.status == RECOVERED_PENDING:
            cleared = tuple(sorted(urgent_codes(row.fingerprint)))
            plan.recoveries.append(UrgentRecovery(cid, rec.name, url, cleared, happened))
        else:
            plan.alerts.append(UrgentAlert(cid, rec.name, rec.mrr, rec.currency, url, item.signals, happened))
    return plan


def _judge(
    session: Session,
    account: Account,
    item: Judged,
    told: AlertState | None,
    floor: int | None,
    now: datetime,
) -> AlertState | None:
    """The row this tick's message about the customer settles, or None when there is nothing to say now."""
    codes = item.codes
    said = urgent_codes(told.fingerprint) if told is not None else frozenset()
    ours = told is not None and told.via == WATCH
    if told is not None and ours and told.status == RECOVERED_PENDING:
        if not codes:
            return told  # a recovery Slack has not accepted yet
        told.status, told.updated_at = SENT, now  # at risk again before the recovery was told
    big = floor is not None and item.records.mrr >= floor
    if codes - said and big:
        if told is not None:
            told.status, told.updated_at = CLOSED, now
            session.add(told)
        return _new_alert(session, account, item.records.customer_id, codes, item.records.mrr, now)
    if told is None or not ours:
        return None
    return _follow_up(session, told, item, said, now)


def _follow_up(
    session: Session, told: AlertState, item: Judged, said: frozenset[str], now: datetime
) -> AlertState | None:
    """A watch alert with no new urgent signal: retried while pending and still true, closed unsaid when no
    longer true, and once sent and all cleared, a recovery (or, for a customer who left, closed silently)."""
    if told.status == PENDING:
        if item.codes == said:
            return told  # Slack was down: this tick tries again
        told.status, told.updated_at = CLOSED, now  # never told, and no longer true as it stood
        session.add(told)
        return None
    if told.status == SENT and not item.codes:
        told.status, told.updated_at = (RECOVERED_PENDING if recovers(item) else CLOSED), now
        session.add(told)
        return told if told.status == RECOVERED_PENDING else None
    return None


def recovers(item: Judged) -> bool:
    """Whether urgent signals that cleared mean the customer recovered: it still pays on a live subscription,
    and no event of this tick ended the matter otherwise (a subscription that ended is churn, an invoice
    voided or written off is no payment: the digest and the post-mortem tell those)."""
    live = any(s.status in LIVE and s.ended_at is None for s in item.records.subscriptions)
    ended = any(h.type in ENDINGS for h in item.happened)
    return live and item.records.mrr > 0 and not ended


@dataclass
class Delivered:
    messages: int = 0
    pending: int = 0
    settled: set[str] = field(default_factory=set)  # customers whose message Slack accepted
    error: str | None = None
    skipped: str | None = None


def post_plan(
    engine: Engine, settings: Settings, account: Account, plan: UrgentPlan, pause: float = 1.0
) -> Delivered:
    """Post the plan's messages; each message Slack accepts settles its customers' rows (a pending alert
    becomes sent, a recovery is closed). Never raises for a Slack failure: what Slack did not accept stays
    pending, for the next tick or the nightly digest."""
    out = Delivered(pending=len(plan.rows))
    messages = build_urgent(account.name, plan.alerts, plan.recoveries)
    if not messages:
        return out
    webhook = slack_webhook(settings, account)
    if webhook is None:
        out.skipped = f"account {account.name}: no Slack webhook configured; urgent alerts stay pending"
        return out
    for n, message in enumerate(messages):
        if n:
            time.sleep(pause)  # incoming webhooks take about one message a second
        delivery = post(webhook.reveal(), message.payload())
        if not delivery.ok:
            out.error = f"account {account.name}: {delivery.error}"
            log.warning("urgent alert not delivered, kept pending: %s", delivery.error)
            return out
        with session_scope(engine) as session:
            settle(session, [plan.rows[cid] for cid in message.customer_ids])
        out.messages += 1
        out.settled |= set(message.customer_ids)
        out.pending -= len(message.customer_ids)
    return out
