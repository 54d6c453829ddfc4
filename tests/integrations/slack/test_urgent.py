"""The same-day urgent message: who, MRR at risk, what happened and when, the dashboard link, escaped."""

from __future__ import annotations

from integrations.slack.urgent import Happened, UrgentAlert, UrgentRecovery, build_urgent
from metrics.at_risk import Signal

URL = "https://dashboard.stripe.com/customers/"
T = 1_796_128_800  # 2026-12-01 12:40 UTC (1_796_083_200 is 00:00, + 12 h 40 min)


def alert(n: int, name: str = "Globex") -> UrgentAlert:
    signal = Signal("cancel_scheduled", "subscription sub_1 cancels at period end on 2026-12-31", 0.9)
    happened = (Happened("customer.subscription.updated", T),)
    return UrgentAlert(f"cus_{n}", name, 500000, "usd", URL + f"cus_{n}", (signal,), happened)


def test_an_alert_says_who_how_much_what_and_when() -> None:
    [message] = build_urgent("acme", [alert(1, "A&B <Ltd>")], [])
    assert message.customer_ids == ("cus_1",)
    header, section = message.blocks
    assert header["text"]["text"] == "Same-day alert: acme: 1 urgent"
    text = section["text"]["text"]
    assert f"*<{URL}cus_1|A&amp;B &lt;Ltd&gt;>* `cus_1`" in text
    assert "*$5,000.00* MRR at risk" in text
    assert "• *cancel_scheduled*: subscription sub_1 cancels at period end on 2026-12-31" in text
    assert "customer.subscription.updated at 2026-12-01 12:40 UTC" in text
    assert "A&B <Ltd> (cus_1) $5,000.00 MRR at risk" in message.readable
    assert (
        "A&amp;B &lt;Ltd&gt; (cus_1)" in message.text and "<Ltd>" not in message.text
    )  # the fallback as sent


def test_a_recovery_says_what_cleared() -> None:
    recovery = UrgentRecovery("cus_2", "Initech", URL + "cus_2", ("cancel_scheduled", "payment_failed"), ())
    [message] = build_urgent("acme", [], [recovery])
    text = message.blocks[1]["text"]["text"]
    assert "recovered: cancellation withdrawn, payment succeeded (at the last sync)" in text


def test_many_alerts_are_split_to_slacks_block_limit() -> None:
    messages = build_urgent("acme", [alert(n) for n in range(120)], [])
    assert [len(m.blocks) for m in messages] == [50, 50, 23]
    assert sum(len(m.customer_ids) for m in messages) == 120
    assert messages[0].blocks[0]["text"]["text"].endswith("(1/3)")
    assert build_urgent("acme", [], []) == []
