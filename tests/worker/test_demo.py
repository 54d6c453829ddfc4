"""`retention demo` and `retention report` end to end on the embedded SQLite: every real step, no network."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from worker.cli.demo import preview
from worker.cli.main import app
from worker.db import ensure_schema
from worker.demo.run import DEMO_HOME
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe
from worker.models import Account
from worker.secrets import KEY_FILE
from worker.settings import get_settings

NO_REDIS = "redis://127.0.0.1:1/14"  # nothing listens there: the demo needs no Redis, even when one is set


def accounts_in(url: str) -> list[str]:
    with Session(ensure_schema(url)) as session:
        return [a.name for a in session.exec(select(Account))]


def test_the_demo_never_touches_the_users_accounts(
    cli: CliRunner, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)  # the user's runs lock in the database
    world = build_sample_world(seed=3, customers=10, months=6, end=date(2026, 11, 1))
    with FakeStripe(world, api_keys=["sk_test_users_own"]) as users_stripe:
        env = {"STRIPE_API_KEY": "sk_test_users_own"}
        connected = cli.invoke(app, ["connect", "mine", "--api-base", users_stripe.url], env=env)
        assert connected.exit_code == 0, connected.output
        # a broker the demo must not use (its locks would share Redis keys with the user's accounts)
        out = str(tmp_path / "demo.html")
        demo = cli.invoke(
            app, ["demo", "--customers", "40", "--out", out], env={"RETENTION_BROKER_URL": NO_REDIS}
        )
        assert demo.exit_code == 0, demo.output
        assert accounts_in(db_url) == ["mine"]  # no `demo` account beside the user's
        # the demo's own home: its database and key file, apart from the user's
        demo_home = Path(get_settings().home) / DEMO_HOME
        assert accounts_in(f"sqlite:///{demo_home / 'retention.db'}") == ["demo"]
        assert (demo_home / KEY_FILE).exists() and stat.S_IMODE(demo_home.stat().st_mode) == 0o700
        assert str(demo_home) in demo.output
        # the jobs without NAME run over the user's accounts only, and succeed
        synced = cli.invoke(app, ["sync"])
        assert synced.exit_code == 0, synced.output
        assert "demo" not in synced.output
        nightly = cli.invoke(app, ["nightly", "--json"])
        assert nightly.exit_code == 0, nightly.output
        assert [run["account"] for run in json.loads(nightly.stdout)["accounts"]] == ["mine"]


def test_after_the_demo_on_a_fresh_install_the_jobs_have_nothing_to_do(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RETENTION_BROKER_URL", raising=False)
    demo = cli.invoke(app, ["demo", "--customers", "20", "--out", str(tmp_path / "demo.html")])
    assert demo.exit_code == 0, demo.output
    assert accounts_in(get_settings().database_url) == []
    for job in (["sync"], ["nightly"]):
        result = cli.invoke(app, job)
        assert result.exit_code == 0, (job, result.output)
        assert "No account is connected yet" in result.stderr
    unknown = cli.invoke(app, ["sync", "demo"])  # a named account must exist
    assert unknown.exit_code == 2 and "no account named 'demo'" in unknown.stderr


def test_demo_runs_twice_and_the_report_command_rewrites_the_report(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first.html"
    result = cli.invoke(app, ["demo", "--customers", "40", "--out", str(first)])
    assert result.exit_code == 0, result.output
    assert "Board summary" in result.output and "NRR (T12M, recurring only)" in result.output
    assert "Slack digest preview" in result.output
    assert "=====" in result.output  # the digest as `alert --dry-run` shows it: its header underlined
    html = first.read_text(encoding="utf-8")
    nrr = re.search(r'id="nrr" data-value="([0-9.]+|None)"', html)
    assert nrr is not None

    again = cli.invoke(app, ["demo", "--customers", "40", "--out", str(tmp_path / "second.html")])
    assert again.exit_code == 0, again.output  # the demo account is replaced, not duplicated
    # the demo's data is explored by pointing RETENTION_HOME at its home, as the demo says
    monkeypatch.setenv("RETENTION_HOME", str(Path(get_settings().home) / DEMO_HOME))
    monkeypatch.delenv("RETENTION_DATABASE_URL")
    assert accounts_in(get_settings().database_url) == ["demo"]

    status = cli.invoke(app, ["status", "demo", "--json"])
    assert status.exit_code == 0, status.output
    counts = json.loads(status.output)["accounts"][0]["counts"]
    assert counts["customers"] == 40

    out = tmp_path / "by-command.html"
    made = cli.invoke(app, ["report", "demo", "--out", str(out)])
    assert made.exit_code == 0, made.output
    text = out.read_text(encoding="utf-8")
    assert 'id="chart-movements"' in text and 'id="naive-vs-real"' in text
    # a few sample customers pay in EUR and GBP: the report names where its rates come from
    assert "Exchange rates: ECB reference rates to 2026-10-30; imported: none" in text
    assert 1_000_000 < os.path.getsize(out) <= 1_500_000  # plotly.js inline (its partial bundle): offline


def test_report_refuses_an_unknown_account(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["report", "nosuch", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert not (tmp_path / "r.html").exists()


def test_the_digest_preview_keeps_the_first_lines() -> None:
    assert preview(None) == "(no digest: no account at risk)"
    assert preview("a\nb", max_lines=2) == "a\nb"
    cut = preview("\n".join(f"line {n}" for n in range(10)), max_lines=3)
    assert cut.splitlines()[:3] == ["line 0", "line 1", "line 2"]
    assert cut.splitlines()[3].startswith("… 7 more lines")
