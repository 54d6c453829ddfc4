"""Paging over Stripe lists: limit=100 pages, created-range partitions, and the rest of an embedded list (an
invoice's lines, a subscription's items).

Lists are newest first and follow `starting_after`; a partition is a list restricted to a `created` range so
several can be fetched at once within the rate budget (a long invoice history is split into ranges)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from integrations.stripe.client import StripeReader

Obj = dict[str, Any]
PAGE = 100


@dataclass(frozen=True)
class Page:
    objects: list[Any]
    last_id: str | None  # the cursor to resume after this page
    has_more: bool


def list_params(extra: Obj | None = None, gte: int | None = None, lt: int | None = None) -> Obj:
    """Query parameters of a list call: limit=100 and an optional created range [gte, lt)."""
    params: Obj = {"limit": PAGE, **(extra or {})}
    created: Obj = {}
    if gte is not None:
        created["gte"] = gte
    if lt is not None:
        created["lt"] = lt
    if created:
        params["created"] = created
    return params


def iter_pages(reader: StripeReader, path: str, params: Obj, after: str | None = None) -> Iterator[Page]:
    """Every page of a list from the cursor `after` on (None = the start)."""
    while True:
        query = dict(params)
        if after is not None:
            query["starting_after"] = after
        body = reader.get(path, query)
        data = body.get("data")
        if not isinstance(data, list):
            data = []
        ids = [o["id"] for o in data if isinstance(o, dict) and isinstance(o.get("id"), str)]
        last = ids[-1] if ids else after
        more = bool(body.get("has_more")) and bool(ids)
        yield Page(data, last, more)
        if not more:
            return
        after = last


def complete_lines(reader: StripeReader, invoice: Obj) -> None:
    """Fill `lines.data` with every line: an invoice embeds only the first ones (`lines.has_more`)."""
    lines = invoice.get("lines")
    if not isinstance(lines, dict) or not lines.get("has_more"):
        return
    embedded = lines.get("data")
    data: list[Any] = embedded if isinstance(embedded, list) else []
    after = data[-1].get("id") if data and isinstance(data[-1], dict) else None
    found = list(data)
    for page in iter_pages(reader, f"/v1/invoices/{invoice['id']}/lines", {"limit": PAGE}, after):
        found.extend(page.objects)
    invoice["lines"] = {**lines, "data": found, "has_more": False}


def complete_items(reader: StripeReader, subscription: Obj) -> None:
    """Fill `items.data` with every item: a subscription embeds only the first ones (`items.has_more`); the
    rest come from `GET /v1/subscription_items?subscription=ID`, after the last embedded one."""
    items = subscription.get("items")
    if not isinstance(items, dict) or not items.get("has_more"):
        return
    embedded = items.get("data")
    data: list[Any] = embedded if isinstance(embedded, list) else []
    after = data[-1].get("id") if data and isinstance(data[-1], dict) else None
    found = list(data)
    params = {"limit": PAGE, "subscription": subscription["id"]}
    for page in iter_pages(reader, "/v1/subscription_items", params, after):
        found.extend(page.objects)
    subscription["items"] = {**items, "data": found, "has_more": False}


def complete(reader: StripeReader, list_name: str, obj: Any) -> None:
    """The embedded list an object of this list may leave unfinished: an invoice's lines, a subscription's
    items. Objects without a usable id are left for the parser to reject."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return
    if list_name == "invoices":
        complete_lines(reader, obj)
    elif list_name == "subscriptions":
        complete_items(reader, obj)


def needs_completing(list_name: str, obj: Any) -> bool:
    """Whether `complete` would fetch anything for this object (its embedded list says `has_more`)."""
    key = {"invoices": "lines", "subscriptions": "items"}.get(list_name)
    if key is None or not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return False
    embedded = obj.get(key)
    return isinstance(embedded, dict) and bool(embedded.get("has_more"))


def split_range(start: int, end: int, parts: int) -> list[tuple[int | None, int | None]]:
    """`parts` created ranges covering everything: the first open below, the last open above."""
    if parts <= 1 or end <= start:
        return [(None, None)]
    step = max(1, (end - start) // parts)
    bounds = [start + step * n for n in range(1, parts)]
    edges: list[int | None] = [None, *bounds, None]
    return [(edges[n], edges[n + 1]) for n in range(len(edges) - 1)]


def balanced_ranges(starts: list[int], end: int, parts: int) -> list[tuple[int | None, int | None]]:
    """Ranges with about equal area under "how many of `starts` (sorted) began before t", up to `end`.

    For invoice history: an account bills every customer from its start, so that area tracks invoice counts.
    """
    if not starts or parts <= 1 or end <= starts[0]:
        return [(None, None)]
    grid = 1000
    first = starts[0]
    step = max(1, (end - first) // grid)
    total = sum(end - s for s in starts if s < end)
    bounds: list[int] = []
    count = acc = idx = 0
    t = first
    while t < end and len(bounds) < parts - 1:
        t += step
        while idx < len(starts) and starts[idx] <= t:
            acc += starts[idx]
            count += 1
            idx += 1
        if count * t - acc >= total * (len(bounds) + 1) / parts:
            bounds.append(t)
    edges: list[int | None] = [None, *bounds, None]
    return [(edges[n], edges[n + 1]) for n in range(len(edges) - 1)]


def oldest_created(objects: list[Any], before: int | None) -> int | None:
    """The oldest `created` among a page's objects and an earlier oldest (lists come newest first)."""
    times = [o["created"] for o in objects if isinstance(o, dict) and isinstance(o.get("created"), int)]
    if before is not None:
        times.append(before)
    return min(times, default=None)


def range_share(segments: list[Obj], span: list[int | None] | None) -> float | None:
    """The share of an invoice history read, from the created ranges it is split into (`balanced_ranges`):
    each range holds about the same number of invoices, and within one the reading goes newest first, so
    a range is (its end - the oldest invoice read so far) / (its end - its start) done. `span` is
    [the oldest customer's creation, when the sync started]: the open ends of the first and last ranges.
    None until the ranges exist."""
    if not segments:
        return None
    lo_default, hi_default = span if span else (None, None)
    total = 0.0
    for seg in segments:
        if seg["done"]:
            total += 1.0
            continue
        lo = seg["gte"] if seg["gte"] is not None else lo_default
        hi = seg["lt"] if seg["lt"] is not None else hi_default
        oldest = seg.get("oldest")
        if oldest is None or lo is None or hi is None or hi <= lo:
            continue
        total += min(1.0, max(0.0, (hi - oldest) / (hi - lo)))
    return total / len(segments)
