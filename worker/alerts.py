"""The Slack alert run for one account: who is newly at risk, who recovered, and delivery that loses nothing.

No spam: each customer's alert is remembered by (account, customer, fingerprint), the fingerprint being its
set of signal codes. A customer alerted with the same signals is not alerted again; new or changed signals
are; a customer whose signals all cleared while still paying is reported once as recovered. Alerts are
written as `pending` before anything is posted and marked `sent` only for the messages Slack accepted, so an
outage leaves them pending for the next run, and a crash between posting and marking repeats an alert rather
than losing it. The outcome of the last delivery (and a revoked webhook) is kept in `alert_delivery` for
`retention status`. A customer a same-day watch tick already told Slack about (worker/watch_alerts.py), with
the urgent signals the digest finds, is listed once under "Already alerted today" and taken over as sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from integrations.slack.digest import MAX_BLOCKS, SlackMessage, build_digest, with_already_alerted
from integrations.slack.webhook import post
from metrics.at_risk import AtRiskAccount, RecoveredAccount
from metrics.calendar import utc_now
from metrics.money import fmt
from worker.accounts import slack_webhook
from worker.alert_state import (
    CLOSED,
    DIGEST,
    PENDING,
    RECOVERED_PENDING,
    SENT,
    WATCH,
    AlertDelivery,
    AlertRow,
    open_alert_rows,
    settle_rows,
    urgent_codes,
    write_rows,
)
from worker.db import session_scope
from worker.errors import describe
from worker.models import Account
from worker.rebuild import ensure_ledger
from worker.risk import (
    assess_account,
    customer_display_names,
    dashboard_url,
    paying_among,
    refresh_meter_usage,
)
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


def fingerprint(item: AtRiskAccount) -> str:
    """An alert's identity: the same signals again are not news, a new or a dropped signal is."""
    return "+".join(sorted(set(item.assessment.codes)))


@dataclass
class _Plan:
    """What this run tells Slack, and the row each customer told settles once Slack accepts its message."""

    alerts: list[AtRiskAccount] = field(default_factory=list)
    recovered: list[RecoveredAccount] = field(default_factory=list)
    rows: dict[str, AlertRow] = field(default_factory=dict)  # customer -> the row its message will settle
    already: list[AtRiskAccount] = field(default_factory=list)  # told today by a same-day watch alert
    reopened: list[AlertRow] = field(default_factory=list)  # rows of new or changed alerts, to be written


def _reopen(plan: _Plan, item: AtRiskAccount, now: datetime) -> AlertRow:
    """The pending row of a new or changed alert; signals alerted once and closed since are told again (the
    row is written as an upsert: an earlier row with these signals is reused, `alert_state.write_rows`)."""
    row = AlertRow(item.customer_id, fingerprint(item), PENDING, DIGEST, item.assessment.mrr, now, None)
    plan.reopened.append(row)
    return row


def _alert_row(plan: _Plan, item: AtRiskAccount, told: AlertRow | None, now: datetime) -> AlertRow | None:
    """The row a message about `item` settles, or None when Slack already has exactly this alert.

    `told` is the customer's open alert. With the same signals it is repeated only while still pending (a
    customer back at risk as before its recovery was told has nothing new to say); with other signals it
    is closed and the new set is alerted.
    """
    if told is not None and told.fingerprint == fingerprint(item):
        if told.status == RECOVERED_PENDING:
            told.status = SENT
        told.mrr, told.updated_at = item.assessment.mrr, now
        return told if told.status == PENDING else None
    if told is not None:
        told.status, told.updated_at = CLOSED, now
    return _reopen(plan, item, now)


def _told_today(told: AlertRow | None, item: AtRiskAccount) -> bool:
    """Whether a same-day watch alert already told Slack what this digest would say of the customer: sent,
    and with exactly the urgent signals the digest finds (the other signals only add detail)."""
    return (
        told is not None
        and told.via == WATCH
        and told.status == SENT
        and urgent_codes(told.fingerprint) == urgent_codes(item.assessment.codes)
    )


def _adopt(plan: _Plan, item: AtRiskAccount, told: AlertRow, now: datetime) -> None:
    """The digest takes over a watch alert as sent, under its own fingerprint: no later night repeats it."""
    if told.fingerprint == fingerprint(item):
        told.via, told.mrr, told.updated_at = DIGEST, item.assessment.mrr, now
        return
    told.status, told.updated_at = CLOSED, now
    row = _reopen(plan, item, now)
    row.status, row.via, row.sent_at = SENT, DIGEST, told.sent_at


def _recovered(row: AlertRow, still_paying: bool, now: datetime) -> bool:
    """Whether an open alert of a customer no longer at risk becomes (or stays) a recovery to report.

    Only a sent alert has a recovery worth telling, and only while the customer pays: an alert never sent
    and a churned customer (the post-mortem covers it) are closed with nothing to say.
    """
    if row.status == PENDING:
        row.status = CLOSED
    elif row.status == SENT:
        row.status = RECOVERED_PENDING if still_paying else CLOSED
    row.updated_at = now
    return row.status == RECOVERED_PENDING


def _plan(
    engine: Engine,
    account: Account,
    items: list[AtRiskAccount],
    still_paying: Callable[[Collection[str]], set[str]],
    write: bool,
) -> _Plan:
    """Compare today's at-risk list with what was told before; with `write`, record the new state.

    Set-based: the open rows are read in one query and every change is written in two statements
    (`alert_state.write_rows`); each open row is touched (its MRR or status and its last update), so all of
    them are written back. `still_paying` is asked only about the customers no longer at risk.
    """
    with engine.connect() as conn:
        open_rows = open_alert_rows(conn, account.id or 0)
    now = utc_now()
    plan = _Plan()
    for item in items:
        told = open_rows.get(item.customer_id)
        if _told_today(told, item):
            assert told is not None
            _adopt(plan, item, told, now)
            plan.already.append(item)
            continue
        row = _alert_row(plan, item, told, now)
        if row is None:
            continue
        plan.alerts.append(item)
        plan.rows[item.customer_id] = row
    current = {i.customer_id for i in items}
    gone = [cid for cid in open_rows if cid not in current]
    paying_now = still_paying(gone) if gone else set()
    recovered = [(cid, open_rows[cid]) for cid in gone if _recovered(open_rows[cid], cid in paying_now, now)]
    names = customer_display_names(engine, account, [cid for cid, _ in recovered])
    for cid, row in recovered:
        plan.recovered.append(RecoveredAccount(cid, names.get(cid, cid), dashboard_url(account, cid)))
        plan.rows[cid] = row
    if write:
        with engine.begin() as conn:
            write_rows(conn, account.id or 0, list(open_rows.values()), plan.reopened)
    return plan


def _record(engine: Engine, account: Account, result: AlertResult) -> None:
    with session_scope(engine) as session:
        row = session.get(AlertDelivery, account.id) or AlertDelivery(account_id=account.id or 0)
        row.last_attempt_at, row.last_ok, row.last_error = utc_now(), result.error is None, result.error
        row.revoked, row.pending = result.revoked, result.pending
        if result.messages:
            row.last_sent_at = row.last_attempt_at
        session.add(row)


def missing_webhook(settings: Settings, account: Account) -> str | None:
    """Why `retention alert NAME` refuses to post for the account, or None when it can.

    Asked for one account by name, a missing webhook is a mistake to say at once; the nightly run and a run
    over every account only note it and leave the alerts pending.
    """
    if slack_webhook(settings, account) is not None:
        return None
    return (
        f"account {account.name!r} has no Slack webhook: set SLACK_WEBHOOK_URL, or give the account its own"
        f" with `retention update {account.name} --slack-webhook` (or use --dry-run)"
    )


def alert_accounts(
    engine: Engine, settings: Settings, accounts: Iterable[Account], as_of: datetime, dry_run: bool = False
) -> Iterator[AlertResult]:
    """The alert run of each account in turn; an account never rebuilt gets its ledger first.

    A generator, so the command reports each account as soon as its digest is posted.
    """
    for account in accounts:
        ensure_ledger(engine, account)
        yield run_alerts(engine, settings, account, as_of, dry_run=dry_run)


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
            log.warning("account %s: meter usage not refreshed: %s", account.name, describe(exc))
    items = assess_account(engine, account, as_of)  # reuses the verdicts the night already stored
    result.at_risk, result.mrr_at_risk = len(items), sum(i.assessment.mrr for i in items)
    plan = _plan(engine, account, items, lambda gone: paying_among(engine, account, as_of, gone), not dry_run)
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
    messages = with_already_alerted(messages, account.name, plan.already, max_blocks)
    result.pending = len(plan.rows)
    if dry_run:
        result.payloads = [m.payload() for m in messages]
        result.text = "\n\n".join(m.readable for m in messages) or (
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
            f"`retention update {account.name} --slack-webhook` (alerts stay pending)"
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
        with engine.begin() as conn:
            settle_rows(conn, account.id or 0, [plan.rows[cid] for cid in message.customer_ids])
        result.messages += 1
        result.sent += len(message.customer_ids)
        result.pending -= len(message.customer_ids)
