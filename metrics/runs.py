"""Stored results of each nightly metrics run, tagged with the definitions' version.

A change of definitions bumps DEFINITIONS_VERSION, so old runs stay as they were computed and trends never
silently mix two definitions.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime
from sqlmodel import Field, SQLModel

DEFINITIONS_VERSION = "metrics-2026.12"  # 2026.12: ECB exchange rates by default


class MetricRun(SQLModel, table=True):
    __tablename__ = "metric_run"
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True, ondelete="CASCADE")
    as_of: date
    computed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    definitions_version: str = Field(default=DEFINITIONS_VERSION, max_length=40)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The ledger's generation the payload was computed at (the account's verdict epoch, worker/risk_store.py),
    # None when a rebuild moved it meanwhile; and what else it depends on (reporting currency, size bands). A
    # reader that finds both current takes the payload as computing it again would give it (the report).
    epoch: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    basis: str | None = Field(default=None, max_length=64)
