"""A local Stripe-compatible HTTP server on 127.0.0.1, serving objects held in Python dicts.

Tests, benchmarks and the demo talk to it through the real SDK, so paging, filters, embedded invoice lines,
errors and faults behave as Stripe's do. It is read-only, like our use of Stripe: any write is answered 405
and recorded, so a test can prove we never write."""

from __future__ import annotations

import json
import operator
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    """Objects of one type, served newest first (created desc, then id desc) like Stripe's lists."""

    def __init__(self) -> None:
        self.by_id: dict[str, Obj] = {}
        self._order: list[str] | None = None
        self._index: dict[str, int] = {}

    def put(self, obj: Obj) -> None:
        if obj["id"] not in self.by_id:
            self._order = None
        self.by_id[obj["id"]] = obj

    def remove(self, obj_id: str) -> None:
        self.by_id.pop(obj_id, None)
        self._order = None

    def ordered(self) -> list[str]:
        if self._order is None:
            self._order = sorted(self.by_id, key=lambda i: (_created(self.by_id[i]), i), reverse=True)
            self._index = {obj_id: n for n, obj_id in enumerate(self._order)}
        return self._order

    def position(self, obj_id: str) -> int | None:
        self.ordered()
        return self._index.get(obj_id)


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
        self.invoice_lines: dict[str, list[Obj]] = {}  # invoice id -> all lines
        self.subscription_items: dict[str, list[Obj]] = {}  # subscription id -> all items
        self.meter_summaries: dict[str, list[Obj]] = {}  # meter id -> summaries
        self.lock = threading.RLock()
        self._events = 0

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
        return self.collections[kind].by_id.get(obj_id)

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
            obj = self.collections[kind].by_id[obj_id]
            previous = {name: obj.get(name) for name in fields}
            obj.update(fields)
            return self.emit(type_, obj, created, previous)

    def delete_customer(self, customer_id: str, at: int | None = None) -> None:
        """Stripe keeps a deleted customer as `{"id", "object", "deleted": true}`: retrievable, not listed.

        Deleting a customer cancels its subscriptions at once (at `at`, default now), as Stripe does; they
        stay listed with `status=all`, canceled."""
        ended = int(time.time()) if at is None else at
        with self.lock:
            old = self.collections["customer"].by_id.get(customer_id) or {}
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
            obj = self.world.get(LISTS[rest[0]], rest[1])
            if obj is None:
                return _missing(f"No such {rest[0]}: '{rest[1]}'")
            return 200, self.render(obj)
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
            summaries = self.world.meter_summaries.get(rest[2], [])
            customer = _one(query, "customer")
            chosen = [s for s in summaries if customer is None or s.get("customer") == customer]
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
        if obj.get("object") == "subscription" and obj.get("deleted") is not True:
            items = self.world.subscription_items.get(obj["id"], [])
            shown_sub = dict(obj)
            shown_sub["items"] = embedded_list(
                items[: self.embedded_items], len(items), f"/v1/subscription_items?subscription={obj['id']}"
            )
            return shown_sub
        if obj.get("object") != "invoice":
            return obj
        lines = self.world.invoice_lines.get(obj["id"], [])
        shown = dict(obj)
        shown["lines"] = embedded_list(
            lines[: self.embedded_lines], len(lines), f"/v1/invoices/{obj['id']}/lines"
        )
        return shown

    def rendered_json(self, obj: Obj) -> bytes:
        """The object as served, serialized once per stored version (identity of the stored dict)."""
        hit = self._json_cache.get(obj["id"])
        if hit is not None and hit[0] is obj:
            return hit[1]
        payload = json.dumps(self.render(obj), separators=(",", ":")).encode()
        self._json_cache[obj["id"]] = (obj, payload)
        return payload

    def list_objects(self, name: str, query: dict[str, list[str]]) -> Obj | bytes:
        coll = self.world.collections[LISTS[name]]
        ids = coll.ordered()
        limit = _limit(query)
        after = _one(query, "starting_after")
        before = _one(query, "ending_before")
        start = 0
        if after is not None:
            pos = coll.position(after)
            start = (pos + 1) if pos is not None else len(ids)
        end = len(ids)
        if before is not None:
            pos = coll.position(before)
            end = pos if pos is not None else 0
        filt = _filter(name, query)
        data: list[Obj] = []
        has_more = False
        by_id = coll.by_id
        if before is not None:
            # ending_before pages backwards: take the `limit` objects just before the cursor
            matching = [
                by_id[i] for i in ids[start:end] if filt(by_id[i]) and by_id[i].get("deleted") is not True
            ]
            has_more = len(matching) > limit
            data = matching[-limit:]
        else:
            for obj_id in ids[start:end]:
                obj = by_id[obj_id]
                if obj.get("deleted") is True or not filt(obj):
                    continue
                if len(data) == limit:
                    has_more = True
                    break
                data.append(obj)
        if self.cache_json:
            head = (
                f'{{"object":"list","url":"/v1/{name}","has_more":{"true" if has_more else "false"},"data":['
            )
            return head.encode() + b",".join(self.rendered_json(o) for o in data) + b"]}"
        return _list_page(f"/v1/{name}", has_more, [self.render(o) for o in data])


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


def _filter(name: str, query: dict[str, list[str]]) -> Callable[[Obj], bool]:
    """The list filters Stripe applies server-side: created bounds, customer, status and event types."""
    bounds = {op: int(v) for op in _BOUNDS if (v := _one(query, f"created[{op}]")) is not None}
    status = _one(query, "status")
    customer = _one(query, "customer")
    types = set(query.get("types[]", [])) | set(query.get("type", []))

    def keep(obj: Obj) -> bool:
        return (
            _within(_created(obj), bounds)
            and (customer is None or obj.get("customer") == customer)
            and _status_matches(name, status, obj.get("status"))
            and not (types and obj.get("type") not in types)
        )

    return keep


def _within(created: int, bounds: dict[str, int]) -> bool:
    return all(_BOUNDS[op](created, bound) for op, bound in bounds.items())


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
