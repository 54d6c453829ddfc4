"""The report in a real browser: headless Chromium opens the file from disk, runs plotly, and we read the DOM.

The report comes from the whole pipeline on the sample company, with the demo's own settings (300 customers,
24 months to the first of this month, as of today: what `retention demo` shows), so what the browser shows is
what a user gets. Three screenshots are kept as test artifacts (artifacts/); with
RETENTION_UPDATE_SCREENSHOTS=1 they also replace the README's pictures (docs/): the desktop page, the page on
a phone 390 px wide, and the page as printed on A4.

Headless Chromium will not make a window narrower than 500 px, so the phone view is the report in a 390 px
wide frame; the printed view is the report with its print style sheet applied on screen (`#print`) at A4's
width, and a real print to PDF checks the paper size.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from metrics.calendar import day_start, utc_now
from worker.cli.common import open_db
from worker.cli.demo import DEMO_CUSTOMERS
from worker.demo.run import run_demo
from worker.demo.sample import default_end
from worker.report.render import pct
from worker.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
A4_WIDTH = 794  # CSS pixels: 210 mm at 96 px per inch
A4_POINTS = (595, 842)  # PDF points: 210 x 297 mm
PHONE = 390


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
    as_of = day_start(utc_now().date())
    outcome = run_demo(
        open_db(settings), settings, Console(quiet=True), DEMO_CUSTOMERS, default_end(), as_of, report
    )
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
    phone, paper = phone_and_paper_screenshots(binary, report, artifacts)
    if os.environ.get("RETENTION_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures on purpose only
        for made in (shot, phone, paper):
            shutil.copyfile(made, ROOT / "docs" / made.name)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def phone_and_paper_screenshots(binary: str, report: Path, artifacts: Path) -> tuple[Path, Path]:
    """The report on a 390 px phone and printed on A4, as screenshots; the print to PDF is on A4 paper."""
    frame = report.with_name("phone.html")
    frame.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0;background:#cbd2d9}'
        f"iframe{{display:block;width:{PHONE}px;height:4200px;border:0;margin:0 auto;background:#fff}}"
        f'</style></head><body><iframe src="{report.name}"></iframe></body></html>',
        encoding="utf-8",
    )
    phone = artifacts / "report-phone.png"
    paper = artifacts / "report-print.png"
    run_chromium(binary, "--window-size=500,4200", f"--screenshot={phone}", frame.as_uri())
    run_chromium(
        binary, f"--window-size={A4_WIDTH},3800", f"--screenshot={paper}", report.as_uri() + "#print"
    )
    assert png_size(phone) == (500, 4200) and phone.stat().st_size > 50_000
    assert png_size(paper) == (A4_WIDTH, 3800) and paper.stat().st_size > 50_000
    pdf = report.with_name("report.pdf")
    run_chromium(binary, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri())
    boxes = set(re.findall(rb"/MediaBox \[0 0 ([0-9.]+) ([0-9.]+)\]", pdf.read_bytes()))
    assert boxes, "chromium printed no page"
    for width, height in boxes:
        assert (round(float(width)), round(float(height))) == A4_POINTS, "the report prints on A4"
    return phone, paper


def test_the_report_reads_on_a_phone_and_prints_on_a4() -> None:
    """The style sheet's promises, read from the template: a layout under 640 px and an A4 print sheet."""
    template = (ROOT / "worker" / "report" / "templates" / "report.html.j2").read_text(encoding="utf-8")
    assert "@media (max-width: 640px)" in template and 'name="viewport"' in template
    assert "@page { size: A4;" in template and 'media="print"' in template
    assert template.count("data-label=") >= 8  # table cells say what they are when stacked on a phone
