"""The dry run and the demo show the digest as Slack shows it (integrations/slack/as_read.py)."""

from __future__ import annotations

from integrations.slack.as_read import message_lines, plain


def test_markup_is_read_as_slack_shows_it() -> None:
    text, urls = plain("*<https://x.test/c/1|Acme &amp; Co>* `cus_1` · *$5.00* -&gt; :white_check_mark: a*b")
    assert text == "Acme & Co cus_1 · $5.00 -> ✓ a*b"
    assert urls == ["https://x.test/c/1"]
    assert plain("see <https://x.test/a>")[0] == "see https://x.test/a"
    assert plain("&amp;gt; stays")[0] == "&gt; stays"  # an escaped entity in a name is shown as typed


def test_blocks_become_lines() -> None:
    payloads = [
        {
            "text": "fallback",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "At-risk accounts: acme"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "2 accounts at risk"}},
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": "*<https://d/1|One>* `cus_1`\n• *late*: x"},
                },
                {"type": "divider"},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "part 1 of 2"}]},
            ],
        },
        {"text": "second *message*", "blocks": []},
    ]
    assert message_lines(payloads) == [
        "At-risk accounts: acme",
        "======================",
        "2 accounts at risk",
        "",
        "One cus_1",
        "• late: x",
        "  https://d/1",
        "",
        "",
        "part 1 of 2",
        "",
        "second message",
    ]
