"""The digest: Block Kit plus fallback text, every figure an alert must carry, and Slack's size limits."""

from __future__ import annotations

from datetime import date

from integrations.slack.digest import MAX_SECTION, build_digest, with_already_alerted
from metrics.at_risk import AtRiskAccount, RecoveredAccount, RiskAssessment, Signal, TrackRecord

URL = "https://dashboard.stripe.com/test/customers/"


def item(n: int, detail: str = "subscription sub_1 cancels at period end on 2026-12-01") -> AtRiskAccount:
    assessment = RiskAssessment(
        f"cus_{n}",
        f"Customer <{n}> & Co",
        50000 + n,
        "usd",
        (Signal("cancel_scheduled", detail, 0.9),),
        date(2026, 12, 1),
        460.0,
    )
    return AtRiskAccount(assessment, URL + f"cus_{n}")


def test_one_message_carries_total_and_each_account() -> None:
    [message] = build_digest(
        "acme",
        date(2026, 11, 1),
        "usd",
        150000,
        3,
        [item(1)],
        [RecoveredAccount("cus_9", "Nine", URL + "cus_9")],
    )
    assert message.customer_ids == ("cus_1", "cus_9")
    blocks = message.blocks
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"] == "At-risk accounts: acme"
    assert "3 accounts at risk, $1,500.00 MRR at risk in total as of 2026-11-01" in blocks[1]["text"]["text"]
    section = blocks[2]["text"]["text"]
    # name escaped for mrkdwn, MRR at risk, renewal, signal with its figures, dashboard link
    assert f"*<{URL}cus_1|Customer &lt;1&gt; &amp; Co>*" in section
    assert "*$500.01* MRR at risk · renews 2026-12-01" in section
    assert "*cancel_scheduled*: subscription sub_1 cancels at period end on 2026-12-01" in section
    assert "recovered" in blocks[3]["text"]["text"] and "cus_9" in blocks[3]["text"]["text"]
    # the fallback text says the same things, escaped like the blocks (Slack parses `<...>` there too)
    assert "Customer &lt;1&gt; &amp; Co (cus_1) $500.01 MRR at risk, renews 2026-12-01" in message.text
    assert "recovered: Nine (cus_9)" in message.text
    # a terminal (dry run) reads it unescaped
    assert "Customer <1> & Co (cus_1) $500.01 MRR at risk, renews 2026-12-01" in message.readable
    assert message.payload() == {"text": message.text, "blocks": blocks}


def test_nothing_new_means_no_message() -> None:
    assert build_digest("acme", date(2026, 11, 1), "usd", 150000, 3, [], []) == []


def test_the_top_10_are_shown_in_full_and_the_rest_summed_up() -> None:
    alerts = [item(n) for n in range(25)]
    [message] = build_digest("acme", date(2026, 11, 1), "usd", 10**7, 25, alerts, [])
    # header, summary, 10 accounts, one line for the other 15
    assert len(message.blocks) == 13
    shown = [b["text"]["text"] for b in message.blocks[2:12]]
    assert all(f"`cus_{n}`" in text for n, text in enumerate(shown))
    rest = message.blocks[12]["text"]["text"]
    # 15 accounts of $500.10 .. $500.24: 15 x $500 + (10 + ... + 24) cents = $7,500 + $2.55
    assert rest == (
        "… and 15 more new or changed accounts at risk ($7,502.55 MRR at risk): see them all with "
        "`retention at-risk acme` or in the report"
    )
    assert "cus_11" not in message.text.replace(rest, "")
    # the summed-up ones were told (in sum): the message settles all 25
    assert message.customer_ids == tuple(f"cus_{n}" for n in range(25))


def test_a_long_digest_is_split_at_50_blocks() -> None:
    recovered = [RecoveredAccount(f"cus_r{n}", f"R{n}", URL + f"cus_r{n}") for n in range(100)]
    alerts = [item(n) for n in range(20)]
    messages = build_digest("acme", date(2026, 11, 1), "usd", 10**7, 20, alerts, recovered)
    # 10 alerts + 1 summing up + 100 recoveries = 111 sections: 48 + 48 + 15, header and summary on each
    assert [len(m.blocks) for m in messages] == [50, 50, 17]
    carried = [cid for m in messages for cid in m.customer_ids]
    assert carried == [f"cus_{n}" for n in range(20)] + [f"cus_r{n}" for n in range(100)]
    assert messages[2].blocks[0]["text"]["text"] == "At-risk accounts: acme (3/3)"


def test_each_signal_carries_its_track_record_once_known() -> None:
    known = AtRiskAccount(item(1).assessment, URL + "cus_1", {"cancel_scheduled": TrackRecord(9, 4)})
    [message] = build_digest("acme", date(2026, 11, 1), "usd", 1, 1, [known, item(2)], [])
    first, second = message.blocks[2]["text"]["text"], message.blocks[3]["text"]["text"]
    assert "(4 of 9 accounts with this signal churned or contracted within 120 days)" in first
    assert "churned or contracted" not in second
    assert "4 of 9 accounts with this signal" in message.text


def test_a_section_never_exceeds_3000_characters() -> None:
    [message] = build_digest("acme", date(2026, 11, 1), "usd", 1, 1, [item(1, detail="x" * 5000)], [])
    text = message.blocks[2]["text"]["text"]
    assert len(text) == MAX_SECTION and text.endswith("…")


def test_accounts_alerted_today_are_listed_once_at_the_end_not_alerted_again() -> None:
    messages = build_digest("acme", date(2026, 11, 1), "usd", 150000, 2, [item(1)], [])
    [message] = with_already_alerted(messages, "acme", [item(2)])
    assert message.customer_ids == ("cus_1",)  # the already alerted settle nothing
    last = message.blocks[-1]["text"]["text"]
    assert last.startswith("*Already alerted today*") and "`cus_2`" in last and "&lt;2&gt; &amp; Co" in last
    assert message.readable.endswith(
        "Already alerted today: Customer <2> & Co (cus_2) $500.02: cancel_scheduled"
    )
    assert message.text.endswith("Customer &lt;2&gt; &amp; Co (cus_2) $500.02: cancel_scheduled")  # as sent


def test_with_nothing_new_the_already_alerted_get_a_message_of_their_own() -> None:
    [message] = with_already_alerted([], "acme", [item(2)])
    assert message.blocks[0]["text"]["text"] == "At-risk accounts: acme" and message.customer_ids == ()
    assert with_already_alerted([], "acme", []) == []
