"""The alert run: no spam over consecutive runs, recoveries, delivery that loses nothing (local server)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from integrations.stripe import changes
from integrations.stripe.models import StripeCustomer, StripeInvoice, StripeSubscription
from metrics.dbapi import reader_of
from tests.support.risk_world import AS_OF, load
from tests.support.slack_server import Answer, FakeSlack
from tests.support.stripe_rows import make_account
from worker.alert_state import AlertDelivery, AlertState
from worker.alerts import run_alerts
from worker.cli.main import app
from worker.db import ensure_schema, session_scope
from worker.models import Account
from worker.rebuild import rebuild_account
from worker.secrets import Secret, encrypt
from worker.settings import get_settings
from worker.status import account_status
from worker.status_reads import last_alert_status

AT_RISK = {"cus_failed", "cus_seats", "cus_cancel", "cus_usage"}


def noted(engine: Engine, account_id: int, *customers: str) -> None:
    """Note changed customers as the sync storing the edited rows would: their verdicts are judged again."""
    with engine.begin() as conn:
        changes.note_page(conn, account_id, "customers", [{"id": c} for c in customers])


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def with_webhook(engine: Engine, url: str) -> Account:
    account = make_account(engine)
    with session_scope(engine) as session:
        row = session.get(Account, account.id)
        assert row is not None
        row.slack_webhook_encrypted = encrypt(get_settings(), Secret(url))
        session.add(row)
    with Session(engine, expire_on_commit=False) as session:
        fresh = session.get(Account, account.id)
        assert fresh is not None
        return fresh


def customers_in(payload: dict) -> set[str]:
    """Customer ids named in a posted message's sections (the ids are shown as `code`)."""
    text = " ".join(block["text"]["text"] for block in payload["blocks"] if block["type"] == "section")
    return {word.strip("`") for word in text.split() if word.startswith("`cus_")}


def states(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {(r.customer_id): r.status for r in session.exec(select(AlertState)) if r.status != "closed"}


def test_same_signals_are_not_alerted_twice(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    first = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert first.error is None and first.sent == 4 and first.messages == 1 and first.pending == 0
    [message] = slack.delivered
    assert customers_in(message) == AT_RISK
    assert "4 accounts at risk, $1,053.00 MRR at risk in total" in message["text"]
    assert states(engine) == dict.fromkeys(AT_RISK, "sent")
    second = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert second.sent == 0 and second.messages == 0 and second.at_risk == 4
    assert len(slack.posts) == 1


def test_names_cannot_ping_the_channel_or_make_links(engine: Engine, slack: FakeSlack) -> None:
    """A customer names itself at checkout: neither the blocks nor the fallback `text` carry its `<...>`."""
    account = with_webhook(engine, slack.url)
    load(engine, account)
    with session_scope(engine) as session:
        for customer_id, name in (
            ("cus_seats", "<!channel>"),
            ("cus_failed", "<https://evil.example|click>"),
        ):
            customer = session.get(StripeCustomer, (account.id, customer_id))
            assert customer is not None
            customer.name = name
            session.add(customer)
    rebuild_account(engine, account, today=AS_OF.date())
    result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.error is None and result.sent == 4
    [message] = slack.delivered
    texts = [message["text"]] + [b["text"]["text"] for b in message["blocks"]]
    for text in texts:
        assert "<!channel>" not in text and "<https://evil.example" not in text
    assert "&lt;!channel&gt;" in message["text"] and "&lt;https://evil.example|click&gt;" in message["text"]
    sections = " ".join(texts[2:])
    assert "&lt;!channel&gt;" in sections and "&lt;https://evil.example|click&gt;" in sections
    # every `<` left in the payload opens one of our own dashboard links
    assert all(text.count("<") == text.count("<https://dashboard.stripe.com/") for text in texts)


def test_changed_signals_are_alerted_again_and_recovery_is_reported_once(
    engine: Engine, slack: FakeSlack
) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    with session_scope(engine) as session:
        # the failing customer paid and is active again; the cancelling one also failed a payment now
        invoice = session.get(StripeInvoice, (account.id, "in_failed_11"))
        sub = session.get(StripeSubscription, (account.id, "sub_failed"))
        cancel_invoice = session.get(StripeInvoice, (account.id, "in_cancel_11"))
        assert invoice and sub and cancel_invoice
        invoice.status, sub.status, cancel_invoice.status = "paid", "active", "open"
        session.add_all([invoice, sub, cancel_invoice])
    noted(engine, account.id or 0, "cus_failed", "cus_cancel")
    rebuild_account(engine, account, today=AS_OF.date())
    result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.sent == 2 and result.at_risk == 3
    message = slack.delivered[-1]
    assert customers_in(message) == {"cus_cancel", "cus_failed"}
    cancel = next(b["text"]["text"] for b in message["blocks"] if "`cus_cancel`" in b["text"]["text"])
    assert "payment_failed" in cancel and "cancel_scheduled" in cancel
    failed = next(b["text"]["text"] for b in message["blocks"] if "`cus_failed`" in b["text"]["text"])
    assert "recovered" in failed
    assert "1 recovered" in message["text"]
    # the recovery is said once; then nothing changes and nothing is posted
    third = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert third.sent == 0 and len(slack.delivered) == 2
    assert "cus_failed" not in states(engine)


def test_slack_down_keeps_alerts_pending_until_the_next_run(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    slack.script(*[Answer(503, "service_unavailable")] * 3)  # the first try and both retries
    down = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert down.sent == 0 and down.pending == 4 and down.error is not None and not down.revoked
    assert "503" in down.error and slack.delivered == []
    assert states(engine) == dict.fromkeys(AT_RISK, "pending")
    with engine.connect() as conn:
        status = last_alert_status(reader_of(conn), account.id or 0)
    assert status is not None and status["ok"] is False and status["pending"] == 4
    back = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert back.error is None and back.sent == 4 and back.pending == 0
    assert customers_in(slack.delivered[0]) == AT_RISK
    with engine.connect() as conn:
        status = last_alert_status(reader_of(conn), account.id or 0)
    assert status is not None and status["ok"] is True and status["error"] is None


def test_slack_unreachable_is_an_error_not_a_crash(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/services/T1/B1/VERYSECRET"
    sock.close()
    account = with_webhook(engine, url)
    load(engine, account)
    with caplog.at_level(logging.DEBUG):
        result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.error is not None and result.pending == 4
    assert "VERYSECRET" not in result.error and "VERYSECRET" not in caplog.text


def test_a_revoked_webhook_is_recorded_on_the_account(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    slack.script(Answer(404, "no_service"))
    result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.revoked and result.pending == 4 and len(slack.posts) == 1
    with Session(engine) as session:
        row = session.get(AlertDelivery, account.id)
    assert row is not None and row.revoked and row.last_ok is False
    assert row.last_error is not None and "no_service" in row.last_error and "revoked" in row.last_error
    with engine.connect() as conn:
        shown = account_status(reader_of(conn), account.id or 0, account.name)[
            "slack"
        ]  # what `retention status --json` prints
    assert shown is not None and shown["revoked"] is True and shown["ok"] is False and shown["pending"] == 4


def test_dry_run_shows_the_message_and_changes_nothing(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    result = run_alerts(engine, get_settings(), account, AS_OF, dry_run=True)
    assert result.text is not None and "Failing Payments LLC (cus_failed) $400.00 MRR at risk" in result.text
    assert len(result.payloads) == 1 and customers_in(result.payloads[0]) == AT_RISK
    assert slack.posts == [] and states(engine) == {}
    # after a real run, a dry run has nothing new to show
    run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    again = run_alerts(engine, get_settings(), account, AS_OF, dry_run=True)
    assert again.payloads == [] and again.text is not None and "nothing new" in again.text


def test_without_a_webhook_alerts_wait(engine: Engine) -> None:
    account = make_account(engine)
    load(engine, account)
    result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.error is None and result.skipped is not None and result.pending == 4
    assert states(engine) == dict.fromkeys(AT_RISK, "pending")


def test_a_digest_cut_short_marks_only_what_slack_accepted(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    # three blocks a message: header, summary and one account, so four messages; the second never gets through
    slack.script(Answer(200), *[Answer(500, "internal_error")] * 3)
    cut = run_alerts(engine, get_settings(), account, AS_OF, pause=0, max_blocks=3)
    assert cut.messages == 1 and cut.sent == 1 and cut.pending == 3 and cut.error is not None
    first = customers_in(slack.delivered[0])
    assert first == {"cus_failed"}  # the highest score goes first
    assert states(engine) == {**dict.fromkeys(AT_RISK - first, "pending"), "cus_failed": "sent"}
    rest = run_alerts(engine, get_settings(), account, AS_OF, pause=0, max_blocks=3)
    assert rest.sent == 3 and rest.pending == 0
    assert set().union(*(customers_in(m) for m in slack.delivered[1:])) == AT_RISK - first


def test_a_customer_who_churns_is_not_reported_as_recovered(engine: Engine, slack: FakeSlack) -> None:
    account = with_webhook(engine, slack.url)
    load(engine, account)
    run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    # the cancelling customer's subscription ends right away instead: it pays nothing at AS_OF any more
    with session_scope(engine) as session:
        sub = session.get(StripeSubscription, (account.id, "sub_cancel"))
        assert sub is not None
        sub.status, sub.ended_at = "canceled", int(AS_OF.timestamp())
        session.add(sub)
    rebuild_account(engine, account, today=AS_OF.date(), full=True)  # edited here, not synced: nothing noted
    result = run_alerts(engine, get_settings(), account, AS_OF, pause=0)
    assert result.error is None and result.at_risk == 3 and result.sent == 0
    assert len(slack.posts) == 1  # no "recovered" message about a customer who left
    assert states(engine) == dict.fromkeys(AT_RISK - {"cus_cancel"}, "sent")


def test_cli_alert_posts_once_and_dry_run_prints(
    cli: CliRunner, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ensure_schema(get_settings().database_url)
    load(engine, make_account(engine))
    dry = cli.invoke(app, ["alert", "acme", "--as-of", "2026-11-01", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    shown = " ".join(dry.stdout.split())  # as Slack shows it, wrapped to the terminal
    assert "Shrinking Seats GmbH cus_seats · $300.00 MRR at risk" in shown and slack.posts == []
    refused = cli.invoke(app, ["alert", "acme", "--as-of", "2026-11-01"])
    assert refused.exit_code == 2 and "no Slack webhook" in refused.output
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    sent = cli.invoke(app, ["alert", "--as-of", "2026-11-01"])
    assert sent.exit_code == 0, sent.output
    assert "4 alerts sent in 1 message, 0 pending" in sent.stdout
    assert customers_in(slack.delivered[0]) == AT_RISK
    slack.script(*[Answer(500, "internal_error")] * 3)
    with session_scope(engine) as session:  # a new signal for the steady customer, while Slack fails
        invoice = session.get(StripeInvoice, (1, "in_steady_11"))
        assert invoice is not None
        invoice.status = "open"
        session.add(invoice)
    noted(engine, 1, "cus_steady")
    failed = cli.invoke(app, ["alert", "--as-of", "2026-11-01"])
    assert failed.exit_code == 1 and "HTTP 500" in failed.output and "1 pending" in failed.stdout
    assert slack.url not in failed.output
