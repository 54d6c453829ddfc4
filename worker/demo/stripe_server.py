"""A local Stripe-compatible HTTP server on 127.0.0.1, serving objects held in Python dicts or packed as JSON.

Tests, benchmarks and the demo talk to it through the real SDK, so paging, filters, embedded invoice lines,
errors and faults behave as Stripe's do. It is read-only, like our use of Stripe: any write is answered 405
and recorded, so a test can prove we never write.

A benchmark's account (100,000 customers, a million invoices) would take gigabytes as dicts and seconds per
page to filter: a packed world (StripeWorld.pack) holds each object as the JSON bytes it is served as, finds a
page's objects by bisecting the `created` order, and answers with those bytes joined."""

from __future__ import annotations

import bisect
import json
import operator
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from worker.demo.builders import embedded_list
from worker.demo.loopback import LoopbackServer, QuietHandler

Obj = dict[str, Any]

# list path -> object type kept in the world
LISTS: dict[str, str] = {
    "customers": "customer",
    "products": "product",
    "prices": "price",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "credit_notes": "credit_note",
    "events": "event",
    "invoiceitems": "invoiceitem",
}


@dataclass
class Fault:
    """One injected failure: an HTTP status (with optional headers/body), or `drop`: close the connection."""

    status: int = 500
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    path_prefix: str = ""  # only requests whose path starts with this
    body: str | None = None  # a raw body to send instead of a Stripe error (e.g. malformed JSON)


class Collection:
    """Objects of one type, served newest first (created desc, then id desc) like Stripe's lists.

    Objects live as dicts (`by_id` is then a plain dict: tests change them in place) until the world is
    packed (StripeWorld.pack): each is then held as the JSON bytes it is served as, a few hundred bytes
    instead of a few kilobytes of dicts, and a page is those bytes joined. A packed object is decoded only
    when it is read through `by_id` or changed (a changed object is packed again)."""

    def __init__(self) -> None:
        self._live: dict[str, Obj] = {}
        self._raw: dict[str, bytes] = {}
        self._created: dict[str, int] = {}  # packed objects' sort key (the live ones carry theirs)
        self._deleted: set[str] = set()  # packed objects Stripe keeps but does not list
        self._order: list[str] | None = None
        self._keys: list[int] = []  # -created along _order: ascending, for bisect on created bounds
        self._index: dict[str, int] = {}

    @property
    def by_id(self) -> Mapping[str, Obj]:
        """id -> object: the stored dicts themselves while nothing is packed, decoded copies after."""
        return self._live if not self._raw else _Unpacked(self)

    @property
    def packed(self) -> bool:
        return bool(self._raw)

    @property
    def live(self) -> dict[str, Obj]:
        """The objects held as dicts: all of them until the world is packed, then those added since."""
        return self._live

    def put(self, obj: Obj) -> None:
        obj_id = obj["id"]
        if obj_id in self._raw:
            self._forget_raw(obj_id)
        old = self._live.get(obj_id)
        if old is None or _created(old) != _created(obj):
            self._order = None
        self._live[obj_id] = obj

    def put_raw(self, obj_id: str, raw: bytes, created: int, deleted: bool) -> None:
        """Stores an object as the JSON bytes it is served as (see StripeWorld.pack)."""
        if self._live.pop(obj_id, None) is not None or self._created.get(obj_id) != created:
            self._order = None
        self._raw[obj_id] = raw
        self._created[obj_id] = created
        if deleted:
            self._deleted.add(obj_id)
        else:
            self._deleted.discard(obj_id)

    def _forget_raw(self, obj_id: str) -> None:
        self._raw.pop(obj_id, None)
        self._created.pop(obj_id, None)
        self._deleted.discard(obj_id)

    def remove(self, obj_id: str) -> None:
        self._live.pop(obj_id, None)
        self._forget_raw(obj_id)
        self._order = None

    def __len__(self) -> int:
        return len(self._live) + len(self._raw)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._live or obj_id in self._raw

    def get(self, obj_id: str) -> Obj | None:
        """The object (a decoded copy if packed), or None."""
        live = self._live.get(obj_id)
        if live is not None:
            return live
        raw = self._raw.get(obj_id)
        return None if raw is None else orjson.loads(raw)

    def raw(self, obj_id: str) -> bytes | None:
        """The packed bytes of an object, None if it is held as a dict."""
        return self._raw.get(obj_id)

    def created_of(self, obj_id: str) -> int:
        live = self._live.get(obj_id)
        return _created(live) if live is not None else self._created[obj_id]

    def is_deleted(self, obj_id: str) -> bool:
        live = self._live.get(obj_id)
        return live.get("deleted") is True if live is not None else obj_id in self._deleted

    def ordered(self) -> list[str]:
        if self._order is None:
            keyed = [(_created(o), i) for i, o in self._live.items()]
            keyed.extend((c, i) for i, c in self._created.items())
            keyed.sort(reverse=True)
            self._order = [i for _, i in keyed]
            self._keys = [-c for c, _ in keyed]
            self._index = {obj_id: n for n, obj_id in enumerate(self._order)}
        return self._order

    def position(self, obj_id: str) -> int | None:
        self.ordered()
        return self._index.get(obj_id)

    def span(self, bounds: dict[str, int]) -> tuple[int, int]:
        """Positions [lo, hi) in the newest-first order whose `created` lies within the bounds."""
        self.ordered()
        keys, lo, hi = self._keys, 0, len(self._keys)
        for op, bound in bounds.items():  # -created ascends along the order
            if op == "gte":
                hi = min(hi, bisect.bisect_right(keys, -bound))
            elif op == "gt":
                hi = min(hi, bisect.bisect_left(keys, -bound))
            elif op == "lt":
                lo = max(lo, bisect.bisect_right(keys, -bound))
            elif op == "lte":
                lo = max(lo, bisect.bisect_left(keys, -bound))
        return lo, hi


class _Unpacked(Mapping[str, Obj]):
    """A packed collection read as id -> object: each read decodes a fresh copy (change it with put)."""

    def __init__(self, coll: Collection) -> None:
        self._coll = coll

    def __getitem__(self, obj_id: str) -> Obj:
        obj = self._coll.get(obj_id)
        if obj is None:
            raise KeyError(obj_id)
        return obj

    def __iter__(self) -> Iterator[str]:
        yield from list(self._coll._live)
        yield from list(self._coll._raw)

    def __len__(self) -> int:
        return len(self._coll)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self._coll


class Children(MutableMapping[str, list[Obj]]):
    """parent id -> every child (an invoice's lines, a subscription's items), in their order.

    While the parent is a dict the list is kept as is. Once packed, a parent whose children all fit in what it
    embeds gets them back from its own bytes; only the longer lists are kept, packed on their own."""

    def __init__(self, parents: Collection, embedded: str) -> None:
        self._parents = parents
        self._embedded = embedded  # the parent's field holding the embedded list: lines or items
        self._live: dict[str, list[Obj]] = {}
        self._raw: dict[str, bytes] = {}
        self._in_parent: set[str] = set()

    def __getitem__(self, parent_id: str) -> list[Obj]:
        live = self._live.get(parent_id)
        if live is not None:
            return live
        raw = self._raw.get(parent_id)
        if raw is not None:
            return list(orjson.loads(raw))
        if parent_id in self._in_parent:
            parent = self._parents.get(parent_id)
            if parent is not None:
                return list(parent[self._embedded]["data"])
        raise KeyError(parent_id)

    def __setitem__(self, parent_id: str, children: list[Obj]) -> None:
        self._raw.pop(parent_id, None)
        self._in_parent.discard(parent_id)
        self._live[parent_id] = children

    def __delitem__(self, parent_id: str) -> None:
        found = parent_id in self
        self._live.pop(parent_id, None)
        self._raw.pop(parent_id, None)
        self._in_parent.discard(parent_id)
        if not found:
            raise KeyError(parent_id)

    def __iter__(self) -> Iterator[str]:
        yield from list(self._live)
        yield from list(self._raw)
        yield from list(self._in_parent)

    def __len__(self) -> int:
        return len(self._live) + len(self._raw) + len(self._in_parent)

    def __contains__(self, parent_id: object) -> bool:
        return parent_id in self._live or parent_id in self._raw or parent_id in self._in_parent

    def pack(self, parent_id: str, shown: int) -> None:
        """The parent was packed embedding its first `shown` children: keep the list only if it is longer."""
        children = self._live.pop(parent_id, None)
        if children is None:
            return
        if len(children) > shown:
            self._raw[parent_id] = _dumps(children)
        else:
            self._in_parent.add(parent_id)


class StripeWorld:
    """The data a fake account holds. Thread-safe enough for tests: writes take the lock."""

    def __init__(self, account: Obj | None = None) -> None:
        self.account: Obj = account or {
            "id": "acct_test",
            "object": "account",
            "settings": {"dashboard": {"display_name": "Test account"}},
            "default_currency": "usd",
        }
        self.collections: dict[str, Collection] = {t: Collection() for t in LISTS.values()}
        # invoice id -> all lines; subscription id -> all items (plain dicts until the world is packed)
        self.invoice_lines: MutableMapping[str, list[Obj]] = {}
        self.subscription_items: MutableMapping[str, list[Obj]] = {}
        self.meter_summaries: dict[str, list[Obj]] = {}  # meter id -> summaries
        self.lock = threading.RLock()
        self._events = 0
        self.packed_embed: tuple[int, int] | None = None  # (lines, items) the packed bytes embed

    def add(self, obj: Obj) -> Obj:
        """Store an object by its `object` type; invoices keep all lines for /v1/invoices/{id}/lines and
        subscriptions all items for /v1/subscription_items?subscription={id}."""
        kind = obj["object"]
        with self.lock:
            if kind == "invoice":
                self.invoice_lines[obj["id"]] = obj.pop("_all_lines", None) or list(obj["lines"]["data"])
            if kind == "subscription":
                items = obj.get("items")
                embedded = items.get("data") if isinstance(items, dict) else None
                self.subscription_items[obj["id"]] = obj.pop("_all_items", None) or list(embedded or [])
            self.collections[kind].put(obj)
        return obj

    def add_all(self, objs: Iterable[Obj]) -> None:
        for obj in objs:
            self.add(obj)

    def get(self, kind: str, obj_id: str) -> Obj | None:
        return self.collections[kind].get(obj_id)

    def render(self, obj: Obj, embedded_lines: int = 10, embedded_items: int = 10) -> Obj:
        """Invoices embed only their first lines and subscriptions their first items, as Stripe does."""
        if obj.get("object") == "subscription" and obj.get("deleted") is not True:
            items = self.subscription_items.get(obj["id"], [])
            shown_sub = dict(obj)
            shown_sub["items"] = embedded_list(
                items[:embedded_items], len(items), f"/v1/subscription_items?subscription={obj['id']}"
            )
            return shown_sub
        if obj.get("object") != "invoice":
            return obj
        lines = self.invoice_lines.get(obj["id"], [])
        shown = dict(obj)
        shown["lines"] = embedded_list(lines[:embedded_lines], len(lines), f"/v1/invoices/{obj['id']}/lines")
        return shown

    def pack(self, embedded_lines: int = 10, embedded_items: int = 10) -> None:
        """Hold every object added so far as the JSON bytes a server embedding that many lines and items
        serves (see the module's docstring). Objects added later stay dicts until the next pack."""
        if self.packed_embed not in (None, (embedded_lines, embedded_items)):
            raise ValueError(f"this world is packed for {self.packed_embed} embedded lines and items")
        with self.lock:
            if not isinstance(self.invoice_lines, Children):
                self.invoice_lines = _children(self.collections["invoice"], "lines", self.invoice_lines)
            if not isinstance(self.subscription_items, Children):
                self.subscription_items = _children(
                    self.collections["subscription"], "items", self.subscription_items
                )
            for coll in self.collections.values():
                for obj in list(coll._live.values()):
                    served = self.render(obj, embedded_lines, embedded_items)
                    coll.put_raw(obj["id"], _dumps(served), _created(obj), obj.get("deleted") is True)
                    if obj.get("object") == "invoice":
                        self.invoice_lines.pack(obj["id"], embedded_lines)
                    elif obj.get("object") == "subscription" and obj.get("deleted") is not True:
                        self.subscription_items.pack(obj["id"], embedded_items)
            self.packed_embed = (embedded_lines, embedded_items)

    def save(self, path: str) -> None:
        """Writes a packed world to a file, so another run serves it without generating it again."""
        self.pack(*(self.packed_embed or (10, 10)))
        with open(path, "wb") as out, self.lock:
            pickle.dump(
                {k: v for k, v in self.__dict__.items() if k != "lock"}, out, protocol=pickle.HIGHEST_PROTOCOL
            )

    @classmethod
    def load(cls, path: str) -> StripeWorld:
        """A world written by save(), its lists already ordered: ordering a million invoices takes seconds,
        which the first requests would otherwise wait for (and time out on a busy machine)."""
        world = cls()
        with open(path, "rb") as src:
            world.__dict__.update(pickle.load(src))  # noqa: S301 - a file this module wrote
        for coll in world.collections.values():
            coll.ordered()
        return world

    def emit(self, type_: str, obj: Obj, created: int, previous: Obj | None = None) -> Obj:
        """Record the event Stripe sends for a change to `obj` (a copy of it as it is now, the snapshot an
        event carries); `previous` holds the changed attributes' old values (`data.previous_attributes`)."""
        with self.lock:
            self._events += 1
            data: Obj = {"object": json.loads(json.dumps(obj))}
            if previous is not None:
                data["previous_attributes"] = previous
            event = {
                "id": f"evt_{self._events:06d}_{created}",
                "object": "event",
                "type": type_,
                "created": created,
                "api_version": "2026-10-28.endive",
                "data": data,
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
            }
            self.collections["event"].put(event)
        return event

    def change(self, kind: str, obj_id: str, type_: str, created: int, **fields: Any) -> Obj:
        """Change a stored object as Stripe would and record its event (`customer.subscription.updated`,
        `invoice.payment_failed`, ...) with the old values of the changed fields."""
        with self.lock:
            coll = self.collections[kind]
            obj = coll.by_id[obj_id]
            previous = {name: obj.get(name) for name in fields}
            obj.update(fields)
            if obj_id not in coll._live:  # a packed object was decoded: store the changed copy
                coll.put(obj)
            return self.emit(type_, obj, created, previous)

    def delete_customer(self, customer_id: str, at: int | None = None) -> None:
        """Stripe keeps a deleted customer as `{"id", "object", "deleted": true}`: retrievable, not listed.

        Deleting a customer cancels its subscriptions at once (at `at`, default now), as Stripe does; they
        stay listed with `status=all`, canceled."""
        ended = int(time.time()) if at is None else at
        with self.lock:
            old = self.collections["customer"].get(customer_id) or {}
            self.collections["customer"].put(
                {"id": customer_id, "object": "customer", "deleted": True, "created": old.get("created", 0)}
            )
            for sub in list(self.collections["subscription"].by_id.values()):
                if sub.get("customer") == customer_id and sub.get("status") not in (
                    "canceled",
                    "incomplete_expired",
                ):
                    self.collections["subscription"].put(
                        {**sub, "status": "canceled", "canceled_at": ended, "ended_at": ended}
                    )

    def remove(self, kind: str, obj_id: str) -> None:
        """An object Stripe no longer lists nor retrieves (e.g. test data deleted from the dashboard)."""
        with self.lock:
            self.collections[kind].remove(obj_id)
            if kind == "subscription":
                self.subscription_items.pop(obj_id, None)

    def summaries(self, meter: str, customer: str | None) -> list[Obj]:
        """A meter's event summaries, for one customer if given (indexed once: a large account has many)."""
        summaries = self.meter_summaries.get(meter, [])
        if customer is None:
            return summaries
        index = self.__dict__.setdefault("_summary_index", {})
        known = index.get(meter)
        if known is None or known[0] is not summaries or known[1] != len(summaries):
            by_customer: dict[str | None, list[Obj]] = {}
            for s in summaries:
                by_customer.setdefault(s.get("customer"), []).append(s)
            known = index[meter] = (summaries, len(summaries), by_customer)
        return known[2].get(customer, [])


def _children(parents: Collection, embedded: str, plain: MutableMapping[str, list[Obj]]) -> Children:
    children = Children(parents, embedded)
    for parent_id, listed in plain.items():
        children[parent_id] = listed
    return children


Handler = Callable[[str, dict[str, list[str]]], tuple[int, Obj]]


class FakeStripe(LoopbackServer):
    """The server (started and stopped by LoopbackServer); `url` is the base for `--api-base`."""

    def __init__(
        self,
        world: StripeWorld | None = None,
        api_keys: Iterable[str] = ("sk_test_123",),
        restricted_keys: Iterable[str] = (),
        latency: float = 0.0,
        has_account_endpoint: bool = True,
        embedded_lines: int = 10,
        cache_json: bool = False,
        embedded_items: int = 10,
    ) -> None:
        self.world = world or StripeWorld()
        self.api_keys = set(api_keys)
        self.restricted_keys = set(restricted_keys)
        self.latency = latency
        self.has_account_endpoint = has_account_endpoint
        self.embedded_lines = embedded_lines
        self.embedded_items = embedded_items  # a subscription embeds its first items, as Stripe does
        # Benchmarks serve thousands of pages from one process: serialize each object once (an object is
        # re-serialized when it is replaced with world.add, not when it is mutated in place, hence opt-in).
        self.cache_json = cache_json
        self._json_cache: dict[str, tuple[Obj, bytes]] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.writes: list[str] = []
        self._lock = threading.Lock()

    # -- lifecycle (LoopbackServer) ------------------------------------------------------------------------
    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _make_handler(self)

    @property
    def url(self) -> str:
        return self.base_url

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def request_count(self, prefix: str = "") -> int:
        return sum(1 for _, path in self.requests if path.startswith(prefix))

    # -- request handling ------------------------------------------------------------------------------------
    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for n, fault in enumerate(self.faults):
                if path.startswith(fault.path_prefix):
                    return self.faults.pop(n)
        return None

    def authorize(self, auth: str | None) -> tuple[int, Obj] | None:
        key = (auth or "").removeprefix("Bearer ").strip()
        if key in self.api_keys or key in self.restricted_keys:
            return None
        return 401, _error(
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided: " + (key[:8] + "***" if key else "(none)"),
        )

    def route(self, path: str, query: dict[str, list[str]], key: str) -> tuple[int, Obj | bytes]:
        """Answers a GET as Stripe would; `key` is the caller's (already authorized) API key."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v1":
            return _unrecognized(path)
        rest = parts[1:]
        if rest == ["account"]:
            return self.account_answer(key)
        if len(rest) == 1 and rest[0] in LISTS:
            return 200, self.list_objects(rest[0], query)
        if len(rest) == 2 and rest[0] in LISTS:
            coll = self.world.collections[LISTS[rest[0]]]
            if rest[1] not in coll:
                return _missing(f"No such {rest[0]}: '{rest[1]}'")
            return 200, self.served(coll, rest[1]) if coll.packed else self.render(coll.by_id[rest[1]])
        return self.route_nested(path, rest, query)

    def route_nested(
        self, path: str, rest: list[str], query: dict[str, list[str]]
    ) -> tuple[int, Obj | bytes]:
        """The lists that hang off one object: an invoice's lines, a subscription's items (a top-level list
        that requires `subscription`, as Stripe's does) and a meter's event summaries."""
        if rest == ["subscription_items"]:
            return self.items_page(query)
        if len(rest) == 3 and rest[0] == "invoices" and rest[2] == "lines":
            lines = self.world.invoice_lines.get(rest[1])
            if lines is None:
                return _missing(f"No such invoice: '{rest[1]}'")
            return 200, _page(lines, query, f"/v1/invoices/{rest[1]}/lines")
        if len(rest) == 4 and rest[:2] == ["billing", "meters"] and rest[3] == "event_summaries":
            chosen = self.world.summaries(rest[2], _one(query, "customer"))
            return 200, _page(chosen, query, f"/v1/billing/meters/{rest[2]}/event_summaries")
        return _unrecognized(path)

    def items_page(self, query: dict[str, list[str]]) -> tuple[int, Obj]:
        """`GET /v1/subscription_items?subscription=ID`: the subscription's items in their order, paged."""
        sub_id = _one(query, "subscription")
        if not sub_id:
            return 400, _error(
                "invalid_request_error", "parameter_missing", "Missing required param: subscription."
            )
        items = self.world.subscription_items.get(sub_id)
        if items is None:
            return _missing(f"No such subscription: '{sub_id}'")
        return 200, _page(items, query, "/v1/subscription_items")

    def account_answer(self, key: str) -> tuple[int, Obj]:
        """`GET /v1/account`: absent on some test servers, refused to restricted keys, as Stripe may."""
        if not self.has_account_endpoint:
            return _missing("Unrecognized request URL.")
        if key in self.restricted_keys:
            return 403, _error(
                "permission_error",
                "secret_key_required",
                "The provided key does not have the required permissions.",
            )
        return 200, self.world.account

    def render(self, obj: Obj) -> Obj:
        """Invoices embed only their first lines and subscriptions their first items, as Stripe does."""
        return self.world.render(obj, self.embedded_lines, self.embedded_items)

    def rendered_json(self, obj: Obj) -> bytes:
        """The object as served, serialized once per stored version (identity of the stored dict)."""
        hit = self._json_cache.get(obj["id"])
        if hit is not None and hit[0] is obj:
            return hit[1]
        payload = json.dumps(self.render(obj), separators=(",", ":")).encode()
        self._json_cache[obj["id"]] = (obj, payload)
        return payload

    def served(self, coll: Collection, obj_id: str) -> bytes:
        """One object's bytes as served: as packed when they embed what this server embeds."""
        raw = coll.raw(obj_id)
        if raw is not None and self.world.packed_embed == (self.embedded_lines, self.embedded_items):
            return raw
        obj = coll.by_id[obj_id]
        if self.cache_json and raw is None:
            return self.rendered_json(obj)
        return json.dumps(self.render(obj), separators=(",", ":")).encode()

    def list_objects(self, name: str, query: dict[str, list[str]]) -> Obj | bytes:
        """One page of a list: the objects within the `created` bounds (found by bisecting the order), after
        or before the cursor, that pass the other filters."""
        coll = self.world.collections[LISTS[name]]
        ids = coll.ordered()
        limit = _limit(query)
        after = _one(query, "starting_after")
        before = _one(query, "ending_before")
        bounds, keep = _filter(name, query)
        start, end = coll.span(bounds)
        if after is not None:
            pos = coll.position(after)
            start = max(start, (pos + 1) if pos is not None else len(ids))
        if before is not None:
            pos = coll.position(before)
            end = min(end, pos if pos is not None else 0)
        by_id = coll.by_id

        def listed(obj_id: str) -> bool:
            return not coll.is_deleted(obj_id) and (keep is None or keep(by_id[obj_id]))

        chosen: list[str] = []
        has_more = False
        if before is not None:
            # ending_before pages backwards: take the `limit` objects just before the cursor
            matching = [i for i in ids[start:end] if listed(i)]
            has_more = len(matching) > limit
            chosen = matching[-limit:]
        else:
            for n in range(start, end):
                if not listed(ids[n]):
                    continue
                if len(chosen) == limit:
                    has_more = True
                    break
                chosen.append(ids[n])
        if self.cache_json or coll.packed:
            head = (
                f'{{"object":"list","url":"/v1/{name}","has_more":{"true" if has_more else "false"},"data":['
            )
            return head.encode() + b",".join(self.served(coll, i) for i in chosen) + b"]}"
        return _list_page(f"/v1/{name}", has_more, [self.render(by_id[i]) for i in chosen])


def _dumps(value: Any) -> bytes:
    """Compact JSON bytes of exactly their size (orjson's own keep a buffer of about 8 KB each)."""
    return bytes(memoryview(orjson.dumps(value)))


def _created(obj: Obj) -> int:
    """Sort/filter key; a malformed `created` (tests serve broken objects on purpose) sorts as 0."""
    value = obj.get("created")
    return value if isinstance(value, int) else 0


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _limit(query: dict[str, list[str]]) -> int:
    try:
        return max(1, min(100, int(_one(query, "limit") or 10)))
    except ValueError:
        return 10


# created[op] filter -> how `created` must compare with its bound
_BOUNDS: dict[str, Callable[[int, int], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
# what a subscription list leaves out when no status is asked for, as Stripe does
_ENDED = ("canceled", "incomplete_expired")


def _filter(name: str, query: dict[str, list[str]]) -> tuple[dict[str, int], Callable[[Obj], bool] | None]:
    """The list filters Stripe applies server-side: the created bounds, and the rest (customer, status and
    event types) as a test on one object, None when there is nothing more to test."""
    bounds = {op: int(v) for op in _BOUNDS if (v := _one(query, f"created[{op}]")) is not None}
    status = _one(query, "status")
    customer = _one(query, "customer")
    types = set(query.get("types[]", [])) | set(query.get("type", []))
    if customer is None and not types and (status is None if name != "subscriptions" else status == "all"):
        return bounds, None

    def keep(obj: Obj) -> bool:
        return (
            (customer is None or obj.get("customer") == customer)
            and _status_matches(name, status, obj.get("status"))
            and not (types and obj.get("type") not in types)
        )

    return bounds, keep


def _status_matches(name: str, wanted: str | None, status: Any) -> bool:
    """Subscriptions hide ended ones unless asked (`all` shows all); other lists filter only when asked."""
    if name != "subscriptions":
        return wanted is None or status == wanted
    if wanted is None:
        return status not in _ENDED
    return wanted == "all" or status == wanted


def _page(items: list[Obj], query: dict[str, list[str]], url: str) -> Obj:
    """Paging over a plain list in its stored order (invoice lines are served in invoice order)."""
    limit = _limit(query)
    after = _one(query, "starting_after")
    start = 0
    if after is not None:
        start = next((n + 1 for n, item in enumerate(items) if item.get("id") == after), len(items))
    return _list_page(url, start + limit < len(items), items[start : start + limit])


def _list_page(url: str, has_more: bool, data: list[Obj]) -> Obj:
    """A page of a list, keys in the order Stripe sends them."""
    return {"object": "list", "url": url, "has_more": has_more, "data": data}


def _error(type_: str, code: str, message: str) -> Obj:
    return {"error": {"type": type_, "code": code, "message": message}}


def _missing(message: str) -> tuple[int, Obj]:
    return 404, _error("invalid_request_error", "resource_missing", message)


def _unrecognized(path: str) -> tuple[int, Obj]:
    return _missing(f"Unrecognized request URL ({path}).")


def _fault_error(status: int) -> Obj:
    """The Stripe error an injected status stands for: a rate limit for 429, a server error otherwise."""
    if status == 429:
        return _error("rate_limit_error", "rate_limit", f"Injected {status}")
    return _error("api_error", "server_error", f"Injected {status}")


def _query(raw: str) -> dict[str, list[str]]:
    """A query string as lists of values: Stripe's array parameters (`types[]`) repeat a key."""
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return query


class _StripeHandler(QuietHandler):
    """Answers one request for `fake`, which the per-server subclass made by `_make_handler` sets."""

    fake: FakeStripe
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this, 40 ms delayed ACKs

    def _send(self, status: int, body: Obj | bytes, headers: dict[str, str] | None = None) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        self._send_raw(status, payload, headers)

    def _send_raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", f"req_{len(self.fake.requests)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.fake
        split = urlsplit(self.path)
        with fake._lock:
            fake.requests.append(("GET", self.path))
        if fake.latency:
            time.sleep(fake.latency)
        fault = fake.next_fault(split.path)
        if fault is not None:
            self._answer_fault(fault)
            return
        denied = fake.authorize(self.headers.get("Authorization"))
        if denied is not None:
            self._send(*denied)
            return
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        status, answer = fake.route(split.path, _query(split.query), key)
        self._send(status, answer)

    def _answer_fault(self, fault: Fault) -> None:
        if fault.drop:
            self.drop()
        elif fault.body is not None:
            self._send_raw(fault.status, fault.body.encode(), fault.headers)
        else:
            self._send(fault.status, _fault_error(fault.status), fault.headers)

    def _refuse_write(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.fake._lock:
            self.fake.requests.append((self.command, self.path))
            self.fake.writes.append(self.path)
        self._send(405, _error("invalid_request_error", "read_only", "This test server is read-only."))

    do_POST = do_DELETE = do_PUT = do_PATCH = _refuse_write  # noqa: N815


def _make_handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    """http.server makes a handler per request from the class alone, so each server gets its own subclass."""

    class StripeHandler(_StripeHandler):
        pass

    StripeHandler.fake = fake
    return StripeHandler
