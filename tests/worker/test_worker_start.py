"""`retention worker` and `retention beat` refuse to start on a bad setting or an unreachable broker: exit 2
and one line at once (about a second; PROMPT allows for a loaded machine's start-up), instead of a traceback,
Celery's default AMQP broker, or 45 minutes of silent retries. Real processes, as an operator (or a container
supervisor) starts them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

RETENTION = str(Path(sys.executable).parent / "retention")
PROMPT = 30  # seconds: far from Celery's minutes of retries, and loose enough for a busy CI machine
NOTHING_THERE = "redis://:hunter2@127.0.0.1:1/0"  # nothing listens on port 1; a password that must not show


def start(command: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [RETENTION, command, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_NIGHTLY_TIME_LIMIT", "abc"),
        ("RETENTION_NIGHTLY_AT", "2am"),
        ("RETENTION_BROKER_WAIT", "-5"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(command: str, variable: str, value: str) -> None:
    done, seconds = start(command, **{variable: value})
    assert done.returncode == 2 and seconds < PROMPT
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: bad configuration: " + variable)


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_an_unreachable_broker_is_one_line_and_exit_2_at_once(command: str) -> None:
    done, seconds = start(command, RETENTION_BROKER_URL=NOTHING_THERE)
    assert done.returncode == 2 and seconds < PROMPT, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(
        "error: cannot reach the broker at RETENTION_BROKER_URL=redis://:**@127.0.0.1:1/0"
    )
    assert "hunter2" not in done.stderr and "RETENTION_BROKER_WAIT" in done.stderr


def test_the_worker_may_wait_for_the_broker_at_start() -> None:
    """For containers started together: it tries for the given seconds, then gives up the same way."""
    done, seconds = start("worker", "--wait-broker", "3", RETENTION_BROKER_URL=NOTHING_THERE)
    assert done.returncode == 2 and 3 <= seconds < 3 + PROMPT, (seconds, done.stderr)
    done, seconds = start("beat", RETENTION_BROKER_URL=NOTHING_THERE, RETENTION_BROKER_WAIT="3")
    assert done.returncode == 2 and 3 <= seconds < 3 + PROMPT, (seconds, done.stderr)


def test_a_reachable_broker_lets_the_worker_start(redis_url: str, tmp_path: Path) -> None:
    """The check passes on a live Redis and the worker comes up with its tasks (stopped at once)."""
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [RETENTION, "worker", "--concurrency", "1", "--without-gossip", "--without-mingle"],
            env={**os.environ, "RETENTION_BROKER_URL": redis_url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        assert "retention.nightly.account" in text and "account locks live in Redis" in text
    finally:
        proc.terminate()
        proc.wait(30)
