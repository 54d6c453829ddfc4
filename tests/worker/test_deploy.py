"""The deployment files parse, and every command they run is a real `retention` command with valid options."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from worker.cli.main import app
from worker.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXTRA_VARIABLES = {"RETENTION_NIGHTLY_TIME_LIMIT"}  # read by worker/celery_app.py
KNOWN_VARIABLES = {name.upper() for name in Settings.model_fields} | EXTRA_VARIABLES


def parse_retention(args: list[str]) -> Any:
    """Parses `retention ARGS` with the real command line, without running it; fails on an unknown command."""
    group: Any = typer.main.get_command(app)
    name, *rest = args
    command = group.get_command(group.make_context("retention", [name]), name)
    assert command is not None, f"`retention {name}` does not exist"
    return command.make_context(name, rest)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_runs_postgres_redis_workers_and_beat_with_healthchecks_and_volumes() -> None:
    spec = compose()
    services = spec["services"]
    assert set(services) >= {"postgres", "redis", "worker", "beat"}
    for name in ("postgres", "redis", "worker", "beat"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert set(spec["volumes"]) >= {"postgres-data", "redis-data"}
    for name in ("worker", "beat"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_commands_are_retention_commands() -> None:
    services = compose()["services"]
    worker_ctx = parse_retention(services["worker"]["command"])
    assert worker_ctx.command.name == "worker" and worker_ctx.params["concurrency"] == 2
    assert parse_retention(services["beat"]["command"]).command.name == "beat"


def test_compose_points_every_role_at_the_shared_services() -> None:
    services = compose()["services"]
    for name in ("worker", "beat"):
        env = services[name]["environment"]
        assert set(env) <= KNOWN_VARIABLES
        assert (
            env["RETENTION_DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in env["RETENTION_DATABASE_URL"]
        )
        assert env["RETENTION_BROKER_URL"].startswith("redis://redis:6379/")


def test_the_image_runs_the_retention_command() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD\s+(\[.*\])$", text, re.M)
    assert entrypoint and cmd
    assert yaml.safe_load(entrypoint.group(1)) == ["retention"]
    assert parse_retention(yaml.safe_load(cmd.group(1))).command.name == "worker"
    assert re.search(r"^USER\s+(?!root)\w+", text, re.M), "the image must not run as root"


@pytest.mark.parametrize(
    ("unit", "command"), [("retention-worker.service", "worker"), ("retention-beat.service", "beat")]
)
def test_systemd_units_start_the_right_command(unit: str, command: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(DEPLOY / unit)
    service = parser["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/retention")
    ctx = parse_retention(argv[1:])
    assert ctx.command.name == command
    assert service["EnvironmentFile"] and service["Restart"] == "on-failure"
    assert service.get("User") not in (None, "root")
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_the_worker_unit_passes_celery_options_through() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(DEPLOY / "retention-worker.service")
    ctx = parse_retention(shlex.split(parser["Service"]["ExecStart"])[1:])
    assert ctx.args == ["--hostname", "worker@%H"]


def test_env_example_lists_every_variable_and_holds_no_secret() -> None:
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    assert set(values) <= KNOWN_VARIABLES
    assert set(values) >= KNOWN_VARIABLES - {"STRIPE_API_KEY"}  # the key is given to `connect` only
    assert values["RETENTION_SECRET_KEY"] == "" and values["SLACK_WEBHOOK_URL"] == ""
    assert values["RETENTION_NIGHTLY_AT"] == "02:00" and values["RETENTION_TIMEZONE"] == "UTC"
    assert values["RETENTION_WATCH_EVERY"] == "15" and values["RETENTION_URGENT_MRR"] == ""


def test_scaling_guide_quotes_only_real_commands() -> None:
    text = (DEPLOY / "SCALING.md").read_text()
    quoted = re.findall(r"`retention ([a-z][^`]*)`", text)
    assert {q.split()[0] for q in quoted} >= {"worker", "beat"}
    for command in quoted:
        parse_retention(shlex.split(command))
    for variable in ("RETENTION_DATABASE_URL", "RETENTION_BROKER_URL", "RETENTION_SECRET_KEY"):
        assert variable in text
