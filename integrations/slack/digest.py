"""The Slack digest of at-risk accounts: Block Kit with a plain-text fallback, split to Slack's limits.

Slack takes at most 50 blocks a message and 3,000 characters in a section's text (docs/stripe.md),
so each account gets one section, long signal details are cut at the limit, and a long digest becomes several
messages. Each message knows which customers it carries, so a digest cut short by an outage marks only the
customers actually delivered as alerted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from metrics.at_risk import AtRiskAccount, RecoveredAccount
from metrics.money import fmt

MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
TOP = 10  # alerts shown in full; the rest are summed up (how many, how much MRR) with where to see them


@dataclass(frozen=True)
class SlackMessage:
    """One post to the webhook, with the customers it settles once Slack accepts it."""

    text: str  # the fallback (notifications, clients without Block Kit): escaped like the blocks
    blocks: list[dict[str, Any]]
    customer_ids: tuple[str, ...]  # alerted and recovered customers this message carries
    readable: str = ""  # the fallback unescaped, for a terminal (a dry run); never sent

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(text: str) -> str:
    """Slack's control characters, in every text we send (blocks and the fallback `text` alike).

    Customer names and signal details are user data: a customer who calls itself `<!channel>` at checkout
    would ping the whole channel, and `<https://evil.example|click>` would become a link. Slack parses
    `<...>` in a message's top-level `text` as well as in mrkdwn blocks, so both are escaped.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn_section(text: str) -> dict[str, Any]:
    """A section block, cut to Slack's limit so one long signal never gets the whole message refused."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, MAX_SECTION)}}


def track_text(item: AtRiskAccount, code: str) -> str:
    """A signal's track record from the account's backtest, once it has 5 past cases (else nothing)."""
    record = item.track.get(code)
    if record is None:
        return ""
    return (
        f" ({record.hits} of {record.flags} accounts with this signal churned or contracted within 120 days)"
    )


def alert_section(item: AtRiskAccount) -> dict[str, Any]:
    a = item.assessment
    renewal = f" · renews {a.renewal_date}" if a.renewal_date else ""
    head = (
        f"*<{item.dashboard_url}|{escape(a.name)}>* `{escape(a.customer_id)}` · *{fmt(a.mrr, a.currency)}* "
        f"MRR at risk{renewal} · score {a.score:,.2f}"
    )
    body = "\n".join(f"• *{s.code}*: {escape(s.detail)}{track_text(item, s.code)}" for s in a.signals)
    return _mrkdwn_section(f"{head}\n{body}")


def recovered_section(item: RecoveredAccount) -> dict[str, Any]:
    return _mrkdwn_section(
        f":white_check_mark: *<{item.dashboard_url}|{escape(item.name)}>* `{escape(item.customer_id)}` "
        "recovered: no risk signal any more"
    )


def alert_text(item: AtRiskAccount) -> str:
    """The account's fallback line as a person reads it (unescaped: `build_digest` escapes what it sends)."""
    a = item.assessment
    renewal = f", renews {a.renewal_date}" if a.renewal_date else ""
    signals = "; ".join(f"{s.code}: {s.detail}{track_text(item, s.code)}" for s in a.signals)
    return (
        f"- {a.name} ({a.customer_id}) {fmt(a.mrr, a.currency)} MRR at risk{renewal}: {signals} "
        f"{item.dashboard_url}"
    )


def recovered_text(item: RecoveredAccount) -> str:
    """The recovered account's fallback line, unescaped like `alert_text`."""
    return f"- recovered: {item.name} ({item.customer_id}) {item.dashboard_url}"


def rest_text(account: str, currency: str, rest: Sequence[AtRiskAccount]) -> str:
    """The alerts past the top ones, summed up, and where to see them all."""
    mrr = sum(i.assessment.mrr for i in rest)
    return (
        f"… and {len(rest)} more new or changed account{'s' if len(rest) != 1 else ''} at risk "
        f"({fmt(mrr, currency)} MRR at risk): see them all with `retention at-risk {account}` "
        "or in the report"
    )


def build_digest(
    account: str,
    as_of: date,
    currency: str,
    total_at_risk: int,
    at_risk_count: int,
    alerts: Sequence[AtRiskAccount],
    recovered: Sequence[RecoveredAccount],
    max_blocks: int = MAX_BLOCKS,
) -> list[SlackMessage]:
    """The messages to post: header and summary on each, then a section per new/changed or recovered account.

    `alerts` come ranked: the first TOP (10) are shown in full, the rest summed up in one section (and settled
    with it: they were told, in sum). `total_at_risk` and `at_risk_count` cover every at-risk account (also
    those alerted earlier), so each message states the whole exposure while listing only what is new.
    """
    shown, rest = list(alerts[:TOP]), list(alerts[TOP:])
    entries: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
        ((i.customer_id,), alert_section(i), alert_text(i)) for i in shown
    ]
    if rest:
        line = rest_text(account, currency, rest)
        entries.append((tuple(i.customer_id for i in rest), _mrkdwn_section(escape(line)), line))
    entries += [((r.customer_id,), recovered_section(r), recovered_text(r)) for r in recovered]
    if not entries:
        return []
    per_message = max(1, max_blocks - 2)
    chunks = [entries[n : n + per_message] for n in range(0, len(entries), per_message)]
    summary = (
        f"{at_risk_count} account{'s' if at_risk_count != 1 else ''} at risk, "
        f"{fmt(total_at_risk, currency)} MRR at risk in total as of {as_of}; "
        f"{len(alerts)} new or changed, {len(recovered)} recovered"
    )
    messages = []
    for n, chunk in enumerate(chunks, start=1):
        part = f" ({n}/{len(chunks)})" if len(chunks) > 1 else ""
        title = _cut(f"At-risk accounts: {account}{part}", MAX_HEADER)
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            _mrkdwn_section(escape(summary)),
        ] + [section for _, section, _ in chunk]
        readable = "\n".join([f"{title}: {summary}"] + [line for _, _, line in chunk])
        carried = tuple(cid for ids, _, _ in chunk for cid in ids)
        messages.append(SlackMessage(escape(readable), blocks, carried, readable))
    return messages


def already_alerted(items: Sequence[AtRiskAccount]) -> tuple[dict[str, Any], str]:
    """One section (and its readable text, unescaped like `alert_text`) naming the accounts a same-day watch
    alert already told Slack about."""
    lines = [
        (
            f"*<{i.dashboard_url}|{escape(i.assessment.name)}>* `{escape(i.customer_id)}` "
            f"{fmt(i.assessment.mrr, i.assessment.currency)}: {', '.join(i.assessment.codes)}",
            f"{i.assessment.name} ({i.customer_id}) {fmt(i.assessment.mrr, i.assessment.currency)}: "
            f"{', '.join(i.assessment.codes)}",
        )
        for i in items
    ]
    head = "*Already alerted today* (same-day alerts, not repeated):"
    section = _mrkdwn_section("\n".join([head] + [f"• {mrkdwn}" for mrkdwn, _ in lines]))
    return section, "Already alerted today: " + "; ".join(text for _, text in lines)


def with_already_alerted(
    messages: list[SlackMessage], account: str, already: Sequence[AtRiskAccount], max_blocks: int = MAX_BLOCKS
) -> list[SlackMessage]:
    """The digest's messages with the accounts a same-day watch alert already told about since the last
    digest: listed once, at the end of the first message (or in a message of their own), never repeated
    as alerts. The section settles no customer: their alerts were delivered by the watch."""
    if not already:
        return messages
    section, text = already_alerted(already)
    if messages and len(messages[0].blocks) < max_blocks:
        first = messages[0]
        readable = f"{first.readable}\n{text}"
        return [
            SlackMessage(escape(readable), [*first.blocks, section], first.customer_ids, readable),
            *messages[1:],
        ]
    title = _cut(f"At-risk accounts: {account}", MAX_HEADER)
    header = {"type": "header", "text": {"type": "plain_text", "text": title}}
    readable = f"{title}: {text}"
    return [*messages, SlackMessage(escape(readable), [header, section], (), readable)]
