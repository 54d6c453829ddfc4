"""`retention demo` and `retention report` end to end on the embedded SQLite: every real step, no network."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from sqlmodel import Session, select
from typer.testing import CliRunner

from worker.cli.demo import preview
from worker.cli.main import app
from worker.db import get_engine
from worker.models import Account
from worker.settings import get_settings


def test_demo_runs_twice_and_the_report_command_rewrites_the_report(cli: CliRunner, tmp_path: Path) -> None:
    first = tmp_path / "first.html"
    result = cli.invoke(app, ["demo", "--customers", "40", "--out", str(first)])
    assert result.exit_code == 0, result.output
    assert "Board summary" in result.output and "NRR (T12M, recurring only)" in result.output
    assert "Slack digest preview" in result.output
    html = first.read_text(encoding="utf-8")
    nrr = re.search(r'id="nrr" data-value="([0-9.]+|None)"', html)
    assert nrr is not None

    again = cli.invoke(app, ["demo", "--customers", "40", "--out", str(tmp_path / "second.html")])
    assert again.exit_code == 0, again.output  # the demo account is replaced, not duplicated
    with Session(get_engine(get_settings().database_url)) as session:
        assert [a.name for a in session.exec(select(Account))] == ["demo"]

    status = cli.invoke(app, ["status", "demo", "--json"])
    if status.exit_code == 0:  # engineer B's command: the synced counts are the sample's
        counts = json.loads(status.output)["accounts"][0]["counts"]
        assert counts["customers"] == 40

    out = tmp_path / "by-command.html"
    made = cli.invoke(app, ["report", "demo", "--out", str(out)])
    assert made.exit_code == 0, made.output
    text = out.read_text(encoding="utf-8")
    assert 'id="chart-movements"' in text and 'id="naive-vs-real"' in text
    # a few sample customers pay in EUR and GBP: the report names where its rates come from
    assert "Exchange rates: ECB reference rates to 2026-10-30; imported: none" in text
    assert os.path.getsize(out) > 3_000_000  # plotly.js inline: the file works offline


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
