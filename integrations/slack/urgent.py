"""The same-day urgent message: a large account whose cancellation was just scheduled or whose payment just
failed, or its recovery, posted by a watch tick instead of waiting for the nightly digest.

Each entry says who (name, id, dashboard link), the MRR at risk, what happened (the urgent signals with their
figures) and when (the Stripe events that revealed it). Names and details are user data: escaped in the blocks
and in the fallback text alike (digest.py `escape`). Like the digest,
each message knows the customers it settles, and a long list is split to Slack's 50-block limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from integrations.slack.digest import MAX_BLOCKS, MAX_HEADER, SlackMessage, escape
from integrations.slack.digest import _cut as cut
from integrations.slack.digest import _mrkdwn_section as section
from metrics.at_risk import Signal
from metrics.calendar import utc_datetime
from metrics.money import fmt


@dataclass(frozen=True)
class Happened:
    """One Stripe event behind an alert: its type and when Stripe recorded it (Unix seconds)."""

    type: str
    created: int

    def describe(self) -> str:
        return f"{self.type} at {utc_datetime(self.created):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class UrgentAlert:
    customer_id: str
    name: str
    mrr: int  # reporting minor units
    currency: str
    dashboard_url: str
    signals: tuple[Signal, ...]
    happened: tuple[Happened, ...]


@dataclass(frozen=True)
class UrgentRecovery:
    customer_id: str
    name: str
    dashboard_url: str
    cleared: tuple[str, ...]  # the urgent signal codes alerted before that no longer hold
    happened: tuple[Happened, ...]


RECOVERY_WORDS = {"cancel_scheduled": "cancellation withdrawn", "payment_failed": "payment succeeded"}


SHOWN = 3  # the newest events named in an entry


def _when(happened: Sequence[Happened]) -> str:
    return "; ".join(h.describe() for h in happened[-SHOWN:]) or "at the last sync"


def alert_section(item: UrgentAlert) -> tuple[str, str]:
    """(mrkdwn section text, readable plain-text line: escaped when sent) of one urgent alert."""
    head = (
        f":rotating_light: *<{item.dashboard_url}|{escape(item.name)}>* `{escape(item.customer_id)}` · "
        f"*{fmt(item.mrr, item.currency)}* MRR at risk"
    )
    body = "\n".join(f"• *{s.code}*: {escape(s.detail)}" for s in item.signals)
    when = f"• seen in Stripe: {_when(item.happened)}"
    signals = "; ".join(f"{s.code}: {s.detail}" for s in item.signals)
    text = (
        f"- URGENT {item.name} ({item.customer_id}) {fmt(item.mrr, item.currency)} MRR at risk: {signals} "
        f"({_when(item.happened)}) {item.dashboard_url}"
    )
    return f"{head}\n{body}\n{when}", text


def recovery_section(item: UrgentRecovery) -> tuple[str, str]:
    what = ", ".join(RECOVERY_WORDS.get(code, f"{code} cleared") for code in item.cleared)
    head = (
        f":white_check_mark: *<{item.dashboard_url}|{escape(item.name)}>* `{escape(item.customer_id)}` "
        f"recovered: {what} ({_when(item.happened)})"
    )
    text = (
        f"- recovered: {item.name} ({item.customer_id}) {what} ({_when(item.happened)}) {item.dashboard_url}"
    )
    return head, text


def build_urgent(
    account: str,
    alerts: Sequence[UrgentAlert],
    recoveries: Sequence[UrgentRecovery],
    max_blocks: int = MAX_BLOCKS,
) -> list[SlackMessage]:
    """The messages of one watch tick: a header, then a section per alert and per recovery."""
    entries = [(a.customer_id, *alert_section(a)) for a in alerts]
    entries += [(r.customer_id, *recovery_section(r)) for r in recoveries]
    if not entries:
        return []
    per_message = max(1, max_blocks - 1)
    chunks = [entries[n : n + per_message] for n in range(0, len(entries), per_message)]
    messages = []
    for n, chunk in enumerate(chunks, start=1):
        part = f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""
        what = f"{len(alerts)} urgent" + (f", {len(recoveries)} recovered" if recoveries else "")
        title = cut(f"Same-day alert: {account}: {what}{part}", MAX_HEADER)
        blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}}]
        blocks += [section(mrkdwn) for _, mrkdwn, _ in chunk]
        text = "\n".join([title] + [line for _, _, line in chunk])
        messages.append(SlackMessage(escape(text), blocks, tuple(cid for cid, _, _ in chunk), text))
    return messages
