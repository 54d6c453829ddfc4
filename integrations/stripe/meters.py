"""Billing Meter usage: event summaries per customer and period, for prices billed through a meter.

Usage-based prices with a meter (`recurring.meter`) know the customer's usage before it is invoiced; reading
the summaries lets `usage_decline` see the same periods as the billed lines, also for meters whose usage is
billed elsewhere. Optional: accounts without metered prices never call this. Summaries are stored per
(account, meter, customer, start_time) so a rerun is an upsert. Read-only, like every call we make.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Float
from sqlmodel import Field, SQLModel

if TYPE_CHECKING:  # the SDK is needed only to read usage, not to declare the table (start-up time)
    from integrations.stripe.client import StripeReader

PAGE = 100


class MeterUsage(SQLModel, table=True):
    """One meter event summary: the aggregated usage of a customer over [start_time, end_time)."""

    __tablename__ = "stripe_meter_usage"
    account_id: int = Field(foreign_key="account.id", primary_key=True, ondelete="CASCADE")
    meter_id: str = Field(primary_key=True, max_length=255)
    customer_id: str = Field(primary_key=True, max_length=255)
    start_time: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    end_time: int = Field(sa_column=Column(BigInteger, nullable=False))
    aggregated_value: float = Field(sa_column=Column(Float, nullable=False))


@dataclass(frozen=True)
class MeterSummary:
    meter_id: str
    customer_id: str
    start_time: int
    end_time: int
    aggregated_value: float


def fetch_meter_summaries(
    reader: StripeReader, meter_id: str, customer_id: str, start_time: int, end_time: int
) -> list[MeterSummary]:
    """GET /v1/billing/meters/{meter}/event_summaries for one customer and window, every page.

    Goes through the sync's StripeReader (the account's request budget and retries); a failure that remains
    raises its StripeReadError. Summaries outside the window are dropped here too, so a server that ignores
    the filter cannot widen it.
    """
    path = f"/v1/billing/meters/{meter_id}/event_summaries"
    params: dict[str, Any] = {
        "customer": customer_id,
        "start_time": start_time,
        "end_time": end_time,
        "limit": PAGE,
    }
    out: list[MeterSummary] = []
    while True:
        body = reader.get(path, params)
        data = body.get("data") or []
        for item in data:
            start, end = int(item["start_time"]), int(item["end_time"])
            if start_time <= start and end <= end_time:
                out.append(MeterSummary(meter_id, customer_id, start, end, float(item["aggregated_value"])))
        if not body.get("has_more") or not data:
            return out
        params["starting_after"] = data[-1]["id"]
