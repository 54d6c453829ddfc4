"""Reading `/v1/events` since a cursor: which stored objects changed, which customers each event touched, and
which events were already applied by an earlier read.

The sync re-reads a few minutes before its cursor (our clock and Stripe's differ, and an event can become
listable a moment after its `created` second), so consecutive reads overlap. The ids of the events a read
returned are kept with the cursor (`SyncState.events_seen`) and skipped by the next read: the nightly sync and
the same-day watch share that cursor, so between them every event is applied once, never skipped, never twice.
An event's `data.object` is a snapshot of the object then: the caller re-reads the object itself; the snapshot
only says which customer was touched and what happened (type, time, the attributes that changed).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from integrations.stripe.client import StripeReader
from integrations.stripe.pages import iter_pages, list_params
from integrations.stripe.records import RecordError, parse_event

Obj = dict[str, Any]


@dataclass(frozen=True)
class EventRecord:
    """One event about an object we store, as the watch needs it."""

    id: str
    type: str
    created: int
    list_name: str  # the list whose object changed: "subscriptions", "invoices", ...
    object_id: str | None
    customer_id: str | None  # the customer the event is about, when its object names one
    changed: tuple[str, ...] = ()  # keys of data.previous_attributes (what an `.updated` event changed)


@dataclass
class EventBatch:
    """What one read of the events list returned."""

    events: list[EventRecord] = field(default_factory=list)  # new events about stored objects, oldest first
    seen: list[tuple[str, int]] = field(default_factory=list)  # (id, created) of every event returned
    rejected: list[Obj] = field(default_factory=list)  # events whose object could not be read
    skipped: int = 0  # events an earlier read already applied


def _customer_of(target: Obj, list_name: str) -> str | None:
    if list_name == "customers":
        value = target.get("id")
    else:
        value = target.get("customer")
        if isinstance(value, dict):  # an expanded customer
            value = value.get("id")
    return value if isinstance(value, str) else None


def event_record(obj: Any) -> EventRecord | None:
    """The record of an event about a stored object, None for other events; RecordError when unreadable."""
    found = parse_event(obj)
    if found is None:
        return None
    event_id, list_name, object_id = found
    data = obj.get("data") or {}
    target = data.get("object") or {}
    previous = data.get("previous_attributes")
    created = obj.get("created")
    return EventRecord(
        event_id,
        str(obj.get("type") or ""),
        created if isinstance(created, int) else 0,
        list_name,
        object_id,
        _customer_of(target, list_name),
        tuple(sorted(previous)) if isinstance(previous, dict) else (),
    )


def _identity(obj: Any) -> tuple[str, int] | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return None
    created = obj.get("created")
    return obj["id"], created if isinstance(created, int) else 0


def read_events(reader: StripeReader, since: int, seen: Collection[str]) -> EventBatch:
    """Every event created at or after `since`, skipping the ids in `seen` (applied by an earlier read).

    One request per 100 events: a quiet account costs one request.
    """
    batch = EventBatch()
    for page in iter_pages(reader, "/v1/events", list_params(gte=since)):
        for obj in page.objects:
            identity = _identity(obj)
            if identity is not None:
                batch.seen.append(identity)
                if identity[0] in seen:
                    batch.skipped += 1
                    continue
            try:
                record = event_record(obj)
            except RecordError as exc:
                batch.rejected.append({"id": exc.object_id, "object": exc.kind, "error": exc.reason})
                continue
            if record is not None:
                batch.events.append(record)
    batch.events.sort(key=lambda e: (e.created, e.id))
    return batch


def changed_objects(events: Collection[EventRecord]) -> dict[str, set[str]]:
    """Ids of the objects the events say changed, by list name."""
    changed: dict[str, set[str]] = {}
    for event in events:
        if event.object_id is not None:
            changed.setdefault(event.list_name, set()).add(event.object_id)
    return changed


def seen_after(seen: Collection[tuple[str, int]], since: int) -> list[list[Any]]:
    """The (id, created) pairs the next read can still return (created at or after its `since`), as stored."""
    return [[event_id, created] for event_id, created in sorted(set(seen)) if created >= since]
