"""The Slack alert run for one account: who is newly at risk, who recovered, and delivery that loses nothing.

No spam: each customer's alert is remembered by (account, customer, fingerprint), the fingerprint being its
set of signal codes. A customer alerted with the same signals is not alerted again; new or changed signals
are; a customer whose signals all cleared while still paying is reported once as recovered. Alerts are
written as `pending` before anything is posted and marked `sent` only for the messages Slack accepted, so an
outage leaves them pending for the next run, and a crash between posting and marking repeats an alert rather
than losing it. The outcome of the last delivery (and a revoked webhook) is kept in `alert_delivery` for
`retention status`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from integrations.slack.digest import MAX_BLOCKS, AlertItem, RecoveredItem, SlackMessage, build_digest
from integrations.slack.webhook import post
from metrics.money import fmt
from worker.accounts import slack_webhook
from worker.alert_state import (
    CLOSED,
    OPEN_STATES,
    PENDING,
    RECOVERED_PENDING,
    SENT,
    AlertDelivery,
    AlertState,
    now_utc,
)
from worker.db import session_scope
from worker.models import Account
from worker.risk import assess_records, dashboard_url, is_current, load_records, paying, refresh_meter_usage
from worker.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class AlertResult:
    account: str
    sent: int = 0  # customer alerts (risk and recovery) Slack accepted in this run
    pending: int = 0  # alerts still waiting for delivery
    messages: int = 0  # Slack messages posted
    at_risk: int = 0
    mrr_at_risk: int = 0  # reporting minor units
    text: str | None = None  # dry run: what would be posted
    payloads: list[dict[str, Any]] = field(default_factory=list)  # dry run: the Block Kit messages
    error: str | None = None
    revoked: bool = False
    skipped: str | None = None  # why nothing was posted although alerts are pending (no webhook configured)


def fingerprint(item: AlertItem) -> str:
    return "+".join(sorted(set(item.assessment.codes)))


@dataclass
class _Plan:
    alerts: list[AlertItem]
    recovered: list[RecoveredItem]
    rows: dict[str, AlertState]  # customer -> the open row a message will settle


def _plan(
    session: Session,
    account: Account,
    items: list[AlertItem],
    still_paying: set[str],
    names: dict[str, str],
    write: bool,
) -> _Plan:
    """Compare today's at-risk list with what was told before; with `write`, record the new state."""
    rows = list(
        session.exec(
            select(AlertState).where(
                AlertState.account_id == account.id, col(AlertState.status).in_(OPEN_STATES)
            )
        )
    )
    open_rows = {r.customer_id: r for r in rows}
    now = now_utc()
    plan = _Plan([], [], {})
    current = {i.assessment.customer_id: i for i in items}
    for item in items:
        cid, fp = item.assessment.customer_id, fingerprint(item)
        row = open_rows.get(cid)
        if row is not None and row.fingerprint == fp:
            if row.status == RECOVERED_PENDING:  # back at risk as before: nothing new to say
                row.status = SENT
            if row.status == PENDING:
                plan.alerts.append(item)
                plan.rows[cid] = row
            row.mrr, row.updated_at = item.assessment.mrr, now
            continue
        if row is not None:
            row.status, row.updated_at = CLOSED, now
        again = session.get(AlertState, (account.id, cid, fp))
        if again is None:
            again = AlertState(account_id=account.id or 0, customer_id=cid, fingerprint=fp, status=PENDING)
        again.status, again.mrr, again.updated_at, again.sent_at = PENDING, item.assessment.mrr, now, None
        if write:
            session.add(again)
        plan.alerts.append(item)
        plan.rows[cid] = again
    for cid, row in open_rows.items():
        if cid in current:
            continue
        if row.status == SENT and cid in still_paying:
            row.status = RECOVERED_PENDING
        elif row.status == PENDING or (row.status == SENT and cid not in still_paying):
            row.status = CLOSED  # never told, or churned (the post-mortem covers it): nothing to report
        if row.status == RECOVERED_PENDING:
            plan.recovered.append(RecoveredItem(cid, names.get(cid, cid), dashboard_url(account, cid)))
            plan.rows[cid] = row
        row.updated_at = now
    if not write:
        session.expunge_all()
    return plan


def _settle(session: Session, rows: list[AlertState]) -> None:
    now = now_utc()
    for row in rows:
        row.status = SENT if row.status == PENDING else CLOSED
        row.sent_at = row.updated_at = now
        session.add(row)


def _record(engine: Engine, account: Account, result: AlertResult) -> None:
    with session_scope(engine) as session:
        row = session.get(AlertDelivery, account.id) or AlertDelivery(account_id=account.id or 0)
        row.last_attempt_at, row.last_ok, row.last_error = now_utc(), result.error is None, result.error
        row.revoked, row.pending = result.revoked, result.pending
        if result.messages:
            row.last_sent_at = row.last_attempt_at
        session.add(row)


def run_alerts(
    engine: Engine,
    settings: Settings,
    account: Account,
    as_of: datetime,
    dry_run: bool = False,
    pause: float = 1.0,
    max_blocks: int = MAX_BLOCKS,
) -> AlertResult:
    """Compute the at-risk list at `as_of` and post what is new to the account's Slack webhook.

    Slack incoming webhooks take about one message a second: `pause` seconds separate the parts of a digest.
    Never raises for a Slack failure: the error is returned and recorded, the alerts stay pending.
    """
    result = AlertResult(account=account.name)
    if not dry_run:
        try:
            refresh_meter_usage(engine, settings, account)
        except Exception as exc:  # meter usage is optional evidence: say so and go on with what is stored
            log.warning("account %s: meter usage not refreshed: %s", account.name, exc)
    mrr = paying(engine, account, as_of)
    records = load_records(engine, account, mrr)
    names = {r.customer_id: r.name for r in records}
    ranked = assess_records(records, as_of, is_current(engine, account, as_of))
    items = [AlertItem(a, dashboard_url(account, a.customer_id)) for a in ranked]
    result.at_risk, result.mrr_at_risk = len(items), sum(i.assessment.mrr for i in items)
    with Session(engine, expire_on_commit=False) as session:
        plan = _plan(session, account, items, set(mrr), names, write=not dry_run)
        if not dry_run:
            session.commit()
    messages = build_digest(
        account.name,
        as_of.date(),
        account.reporting_currency,
        result.mrr_at_risk,
        result.at_risk,
        plan.alerts,
        plan.recovered,
        max_blocks,
    )
    result.pending = len(plan.rows)
    if dry_run:
        result.payloads = [m.payload() for m in messages]
        result.text = "\n\n".join(m.text for m in messages) or (
            f"{account.name}: nothing new to alert ({result.at_risk} at risk, "
            f"{fmt(result.mrr_at_risk, account.reporting_currency)} MRR at risk, all alerted before)"
        )
        return result
    if messages:
        _deliver(engine, settings, account, messages, plan, result, pause)
    _record(engine, account, result)
    return result


def _deliver(
    engine: Engine,
    settings: Settings,
    account: Account,
    messages: list[SlackMessage],
    plan: _Plan,
    result: AlertResult,
    pause: float,
) -> None:
    webhook = slack_webhook(settings, account)
    if webhook is None:
        # Slack is optional: without a webhook the alerts wait, and the nightly run is not a failure
        result.skipped = (
            f"account {account.name}: no Slack webhook configured; set SLACK_WEBHOOK_URL or "
            "reconnect with --slack-webhook-url (alerts stay pending)"
        )
        return
    for n, message in enumerate(messages):
        if n:
            time.sleep(pause)
        delivery = post(webhook.reveal(), message.payload())
        if not delivery.ok:
            result.error = f"account {account.name}: {delivery.error}"
            result.revoked = delivery.revoked
            return
        with session_scope(engine) as session:
            rows = [plan.rows[cid] for cid in message.customer_ids]
            _settle(session, rows)
        result.messages += 1
        result.sent += len(message.customer_ids)
        result.pending -= len(message.customer_ids)
