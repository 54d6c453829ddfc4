"""The report in a real browser: headless Chromium opens the file from disk, runs plotly, and we read the DOM.

The report comes from the whole pipeline on the sample company (local Stripe server, sync, rebuild, metrics,
at-risk), so what the browser shows is what a user gets. The screenshot is kept as a test artifact
(artifacts/report.png) and as the README's picture (docs/report.png).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from rich.console import Console

from worker.cli.common import open_db
from worker.demo.run import run_demo
from worker.report.render import pct
from worker.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
END = date(2026, 11, 1)
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)


def chromium() -> str:
    found = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: the CI image must provide it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI runs this test")
    return found


def run_chromium(binary: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
        ]
        command = [binary, *flags, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered_dom(binary: str, *args: str) -> str:
    """The DOM after the page's scripts ran. On a loaded machine headless Chromium has been seen to exit 0
    with nothing on stdout; one more run tells that apart from a page that really does not render."""
    dom = run_chromium(binary, *args)
    if "</html>" not in dom:
        dom = run_chromium(binary, *args)
    return dom


def chart_div(dom: str, div_id: str) -> str:
    """The chart's div up to the end of its section: what plotly drew inside it, nothing of the next."""
    start = dom.index(f'id="{div_id}"')
    return dom[start : dom.index("</section>", start)]


def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    binary = chromium()
    settings = get_settings()
    report = tmp_path / "report.html"
    outcome = run_demo(open_db(settings), settings, Console(quiet=True), 150, END, AS_OF, report)
    t12m = outcome.metrics["t12m"]
    assert t12m["nrr"] is not None
    # the sample company's services push makes the naive figure visibly higher than the honest one
    assert t12m["nrr_including_one_time"] > t12m["nrr"] + 0.02

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    # one browser run: the DOM after plotly has drawn, and the screenshot of the same page
    dom = rendered_dom(
        binary, "--window-size=1280,3000", f"--screenshot={shot}", "--dump-dom", report.as_uri()
    )
    assert "</html>" in dom, "chromium printed no DOM"
    shown = re.search(r'id="nrr"[^>]*>([^<]+)<', dom)
    assert shown is not None and shown.group(1) == pct(t12m["nrr"])
    naive = re.search(r'id="nrr-naive">([^<]+)<', dom)
    assert naive is not None and naive.group(1) == pct(t12m["nrr_including_one_time"])
    for div_id in ("chart-movements", "chart-trend", "chart-cohorts"):
        part = chart_div(dom, div_id)
        assert 'class="main-svg"' in part, f"{div_id} was not drawn"
    assert re.search(r'class="[^"]*\bbars\b', chart_div(dom, "chart-movements"))  # the stacked bars
    assert re.search(r'class="[^"]*\bhm\b', chart_div(dom, "chart-cohorts"))  # the heatmap layer
    # how good the alerts are: the backtest's figures as the demo printed them, its chart drawn
    assert "How good are these alerts" in dom and outcome.backtest in dom
    precision = re.search(r'id="bt-precision">([^<]+)<', dom)
    assert precision is not None and precision.group(1).endswith("%")
    assert 'class="main-svg"' in chart_div(dom, "chart-backtest")
    assert re.search(r'class="[^"]*\bbars\b', chart_div(dom, "chart-backtest"))
    assert "Churners the alerts missed" in dom

    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    (ROOT / "docs").mkdir(exist_ok=True)
    shutil.copyfile(shot, ROOT / "docs" / "report.png")
