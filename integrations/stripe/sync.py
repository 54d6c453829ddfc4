"""Copying one Stripe account into our tables: full backfill with checkpoints, and the nightly incremental.

Full: every list (customers, products, prices, subscriptions with status=all, invoices of every status with
all their lines, credit notes) is paged with limit=100 by fetcher threads, the invoice history split into
created ranges, so a high-latency API is kept busy up to the rate budget. One writer (this thread) parses and
upserts each page and records the segments' cursors in the same transaction (one for up to TX_SECONDS of
pages), so a sync killed at any point resumes from the last committed page and ends with exactly the rows a
clean sync writes. A bounded queue keeps memory flat. On SQLite the writer's statements run in a process of
their own (writer_process.py), so SQLite's work and the parsing use two cores.

Incremental: events since the last sync (re-reading each changed object, since an event's copy may be stale)
plus each list filtered by `created`, which together cost a handful of requests on a quiet account. Stripe
keeps events 30 days: an older (or missing) cursor cannot be trusted, so we fall back to a full sync and say
so."""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Connection, Engine

from integrations.stripe import changes, deferred_indexes, writer_process
from integrations.stripe.client import NotFound, StripeReader
from integrations.stripe.events import EventBatch, EventRecord, changed_objects, read_events, seen_after
from integrations.stripe.models import SyncState
from integrations.stripe.pages import (
    PAGE,
    Page,
    balanced_ranges,
    complete,
    iter_pages,
    list_params,
    needs_completing,
    oldest_created,
    range_share,
)
from integrations.stripe.records import (
    RecordError,
    parse_credit_note,
    parse_customer,
    parse_invoice,
    parse_price,
    parse_product,
    parse_subscription,
)
from integrations.stripe.repository.sync_state import StoredSyncState, customer_created_times, sync_state
from integrations.stripe.store import (
    CHILD_TABLES,
    LIST_TABLES,
    TRACKED_LISTS,
    Statements,
    commit_without_waiting,
    last_listing,
    mark_listed,
    mark_unlisted_deleted,
    prune_children,
    refresh_statistics,
    stamp_deletions,
    touch_listed,
    upsert,
)
from integrations.stripe.writer_process import SeparateWriter
from metrics.cycles import without_cycle_collection
from metrics.dbapi import reader_of
from metrics.tables import table_of

Obj = dict[str, Any]
# (list name, objects stored so far in that list, share of the list done: 0..1, None while unknown)
Progress = Callable[[str, int, "float | None"], None]

# list name -> extra query parameters (subscriptions leave out canceled ones unless status=all)
LISTS: dict[str, Obj] = {
    "customers": {},
    "products": {},
    "prices": {},
    "subscriptions": {"status": "all"},
    "invoices": {},
    "credit_notes": {},
}
EVENT_RETENTION = 30 * 86400
OVERLAP = 300  # seconds re-read before the last cursor: clock skew between Stripe and us
INVOICE_PARTS = 8  # each range may add one partial page: 8 keeps requests within 2% of the floor
WORKERS = 8
BATCH = 20  # queued pages the writer takes at once
TX_SECONDS = 2.0  # how long the writer's transaction stays open at most (_FullRun._commit says why)
# objects a full sync stores before it first refreshes the tables' planner statistics
# (store.refresh_statistics), then each time the number doubled: right plans for a few ANALYZE in all
ANALYZE_FIRST = 2_000
COLLECT_EVERY = 200  # pages stored between two collections of the young generations (_FullRun.run says why)


@dataclass
class SyncOutcome:
    mode: str  # full | incremental
    note: str = ""  # why this mode, e.g. the stale-cursor fallback
    resumed: bool = False
    stored: dict[str, int] = field(default_factory=dict)
    rejected: list[Obj] = field(default_factory=list)
    requests: int = 0
    events: list[EventRecord] = field(default_factory=list)  # events applied (incremental), oldest first
    events_skipped: int = 0  # events of the overlap an earlier sync or watch tick already applied
    deleted: dict[str, int] = field(default_factory=dict)  # newly marked deleted: customers, subscriptions


def _reject(exc: RecordError) -> Obj:
    return {"id": exc.object_id, "object": exc.kind, "error": exc.reason}


def _parse_page(name: str, objects: list[Any]) -> tuple[list[Obj], list[Obj], list[Obj]]:
    """A page's rows, their children's rows (subscription items, invoice lines) and the objects rejected."""
    rows: list[Obj] = []
    children: list[Obj] = []
    rejected: list[Obj] = []
    append, extend = rows.append, children.extend
    if name == "invoices":
        for obj in objects:
            try:
                row, lines, bad = parse_invoice(obj)
            except RecordError as exc:
                rejected.append(_reject(exc))
                continue
            append(row)
            extend(lines)
            if bad:
                rejected.extend(_reject(b) for b in bad)
        return rows, children, rejected
    parser: Callable[[Any], Obj] = {
        "customers": parse_customer,
        "products": parse_product,
        "prices": parse_price,
        "credit_notes": parse_credit_note,
    }.get(name, parse_customer)
    for obj in objects:
        try:
            if name == "subscriptions":
                row, items = parse_subscription(obj)
                extend(items)
            else:
                row = parser(obj)
        except RecordError as exc:
            rejected.append(_reject(exc))
            continue
        append(row)
    return rows, children, rejected


def store_page(
    conn: Statements, account_id: int, name: str, objects: list[Any], listed_at: int | None = None
) -> tuple[set[str], list[Obj]]:
    """Parse and upsert one page of a list; returns the ids stored and the objects rejected.

    `listed_at` is the mark of the full sync whose list this page is (None for other reads): customers and
    subscriptions remember it, so the sync can tell at its end which ones Stripe no longer lists."""
    with without_cycle_collection():  # a page's rows hold no cycles (_FullRun.run says why it matters)
        return _store_page(conn, account_id, name, objects, listed_at)


def _store_page(
    conn: Statements, account_id: int, name: str, objects: list[Any], listed_at: int | None
) -> tuple[set[str], list[Obj]]:
    rows, children, rejected = _parse_page(name, objects)
    parents = [row["id"] for row in rows]
    if listed_at is not None and name in TRACKED_LISTS:
        mark_listed(rows, listed_at)
        # listed but unparsable: it exists in Stripe, so its stored copy must not be taken for deleted
        stored = set(parents)
        unparsed = [
            o["id"]
            for o in objects
            if isinstance(o, dict) and isinstance(o.get("id"), str) and o["id"] not in stored
        ]
        touch_listed(conn, name, account_id, unparsed, listed_at)
    upsert(conn, LIST_TABLES[name], rows, account_id)
    if name == "subscriptions":
        prune_children(conn, account_id, parents, [c["id"] for c in children], name)
    elif name == "invoices":
        # Lines change only while an invoice is a draft; finalized invoices keep theirs.
        drafts = {r["id"] for r in rows if r["status"] == "draft"}
        if drafts:
            kept = [c["id"] for c in children if c["invoice_id"] in drafts]
            prune_children(conn, account_id, sorted(drafts), kept, name)
    if name in CHILD_TABLES:
        upsert(conn, CHILD_TABLES[name], children, account_id)
    return set(parents), rejected


class Syncer:
    """One sync of one account. `run()` picks full or incremental from SyncState and returns the outcome."""

    def __init__(
        self,
        engine: Engine,
        account_id: int,
        reader: StripeReader,
        progress: Progress | None = None,
        now: Callable[[], float] = time.time,
        workers: int = WORKERS,
        separate_writer: bool = True,
    ) -> None:
        self.engine = engine
        self.account_id = account_id
        self.reader = reader
        self.progress = progress
        self.now = now
        self.workers = workers
        # a full sync into SQLite stores its pages from a process of its own (writer_process.py says why)
        self.separate_writer = separate_writer and writer_process.usable(engine)
        self.stored: dict[str, int] = {}
        self.attempted: str | None = None  # the mode of the run under way (status shows a failed one as such)
        self.history_start: int | None = None  # the oldest customer's creation: invoice history starts there
        self._state_table = table_of(SyncState)

    # -- state ---------------------------------------------------------------------------------------
    def state(self) -> StoredSyncState:
        """The account's sync bookkeeping, creating its row on the first sync (so every outcome has a row to
        be recorded on)."""
        with self.engine.begin() as conn:
            found = sync_state(reader_of(conn), self.account_id)
            if found is None:
                found = StoredSyncState(
                    mode=None,
                    events_cursor=None,
                    events_cursor_created=None,
                    checkpoint={},
                    rejected=[],
                    events_seen=[],
                )
                conn.execute(
                    self._state_table.insert().values(
                        account_id=self.account_id,
                        checkpoint=found.checkpoint,
                        rejected=found.rejected,
                        requests=0,
                    )
                )
            return found

    def _save_state(self, conn: Statements, **values: Any) -> None:
        conn.execute(
            update(self._state_table)
            .where(self._state_table.c.account_id == self.account_id)
            .values(**values)
        )

    def _count(self, name: str, n: int, share: float | None = None) -> None:
        self.stored[name] = self.stored.get(name, 0) + n
        if self.progress is not None:
            self.progress(name, self.stored[name], share)

    # -- choice --------------------------------------------------------------------------------------
    def run(self, full: bool = False, events_only: bool = False) -> SyncOutcome:
        """Full or incremental, as the stored state requires; `events_only` (the same-day watch) reads only
        the events when an incremental is possible, and takes the same full path when it is not."""
        state = self.state()
        checkpoint = state.checkpoint or {}
        cursor = state.events_cursor_created
        incremental = not (checkpoint.get("full") or full or cursor is None)
        incremental = incremental and self.now() - (cursor or 0) <= EVENT_RETENTION - OVERLAP
        self.attempted = "incremental" if incremental else "full"  # what a failure is recorded as
        if not checkpoint.get("full", {}).get("deferred_indexes"):
            with self.engine.connect() as conn:  # left out by a deferring sync that never finished
                if deferred_indexes.missing(conn):
                    deferred_indexes.restore(conn)
                    conn.commit()
        if checkpoint.get("full"):
            outcome = self.full_sync("resuming an interrupted full sync from its checkpoint")
        elif full:
            outcome = self.full_sync("full sync requested")
        elif cursor is None:
            outcome = self.full_sync("no events cursor yet: full sync")
        elif self.now() - cursor > EVENT_RETENTION - OVERLAP:
            outcome = self.full_sync("events cursor is older than Stripe keeps events (30 days): full sync")
        elif events_only:
            outcome = self.events_only(int(cursor), state)
        else:
            outcome = self.incremental(int(cursor), state)
        outcome.requests = self.reader.requests
        outcome.stored = dict(self.stored)
        return outcome

    # -- full ----------------------------------------------------------------------------------------
    def full_sync(self, note: str) -> SyncOutcome:
        state = self.state()
        cp: Obj | None = (state.checkpoint or {}).get("full")
        resumed = cp is not None
        if cp is None:
            started = int(self.now())
            with self.engine.connect() as conn:
                # strictly after every earlier full sync's mark, even one started within the same second
                listing = max(started, last_listing(conn, self.account_id) + 1)
            cp = {
                "started": started,
                "listing": listing,
                "segments": {},
                "rejected": [],
                "invoice_parts": None,
            }
            for name in LISTS:
                if name != "invoices":
                    cp["segments"][name] = {
                        "list": name,
                        "gte": None,
                        "lt": None,
                        "after": None,
                        "done": False,
                    }
            with self.engine.begin() as conn:
                cp["deferred_indexes"] = deferred_indexes.defer(conn)
                self._save_state(conn, checkpoint={"full": cp})
                changes.note_all(conn, self.account_id)  # the pages stored next change any customer
        _FullRun(self, cp).run()
        with self.engine.begin() as conn:  # every list was read to its end: what it left out is gone
            deferred_indexes.restore(conn)
            mark = cp["listing"] if "listing" in cp else cp["started"]  # a checkpoint from before marks
            deleted = mark_unlisted_deleted(conn, self.account_id, mark, cp["started"])
            stamp_deletions(conn, self.account_id, cp["started"])
            changes.note_all(conn, self.account_id)  # again: a rebuild may have run while this was resumed
            self._save_state(
                conn,
                checkpoint={},
                mode="full",
                events_cursor_created=cp["started"],
                events_seen=[],
                rejected=cp["rejected"],
            )
        with self.engine.begin() as conn:  # the rebuild that follows plans its reads with them
            refresh_statistics(conn)
        return SyncOutcome(mode="full", note=note, resumed=resumed, rejected=cp["rejected"], deleted=deleted)

    def invoice_parts(self, started: int) -> list[tuple[int | None, int | None]]:
        """Created ranges for the invoice history, of about equal size so the fetchers finish together.

        No invoice precedes its customer, and a customer is billed every period from its start on, so the
        invoices created before t grow like the sum over customers of (t - created): ranges split that sum.
        """
        with self.engine.connect() as conn:
            created = customer_created_times(reader_of(conn), self.account_id)
        self.history_start = created[0] if created else None  # where the first invoice range begins
        return balanced_ranges(created, started, INVOICE_PARTS)

    # -- incremental ---------------------------------------------------------------------------------
    def incremental(self, cursor: int, state: StoredSyncState) -> SyncOutcome:
        """Events since the cursor (each changed object re-read) plus every list filtered by `created`."""
        started = int(self.now())
        since = cursor - OVERLAP
        rejected: list[Obj] = []
        batch = self._events(since, state, rejected)
        seen: set[str] = set()
        for name, extra in LISTS.items():
            for page in iter_pages(self.reader, f"/v1/{name}", list_params(extra, gte=since)):
                seen |= self._store(name, page.objects, rejected)
        for name, ids in changed_objects(batch.events).items():
            seen |= self._refetch(name, sorted(ids - seen), rejected)
        return self._finish(started, state, batch, rejected, seen, "events since the last sync")

    def events_only(self, cursor: int, state: StoredSyncState) -> SyncOutcome:
        """The same-day watch: only the events since the cursor, each changed object re-read and stored by the
        code the incremental uses, and the same cursor moved on. A quiet account costs one request.

        Objects created without an event of their own do not exist in Stripe (every create emits one), so
        the lists the nightly also reads by `created` add nothing here that the next nightly would miss.
        """
        started = int(self.now())
        rejected: list[Obj] = []
        batch = self._events(cursor - OVERLAP, state, rejected)
        seen: set[str] = set()
        for name, ids in changed_objects(batch.events).items():
            seen |= self._refetch(name, sorted(ids), rejected)
        return self._finish(started, state, batch, rejected, seen, "events since the last sync (watch)")

    def _events(self, since: int, state: StoredSyncState, rejected: list[Obj]) -> EventBatch:
        already = {str(pair[0]) for pair in state.events_seen or [] if pair}
        batch = read_events(self.reader, since, already)
        rejected.extend(batch.rejected)
        return batch

    def _finish(
        self,
        started: int,
        state: StoredSyncState,
        batch: EventBatch,
        rejected: list[Obj],
        seen: set[str],
        note: str,
    ) -> SyncOutcome:
        """Moves the cursor on (with the events the next read must skip) and records what was rejected.

        Objects rejected before and stored now are no longer listed; the newly rejected are added once.
        """
        kept = [r for r in state.rejected or [] if r.get("id") not in seen]
        merged = kept + [r for r in rejected if r not in kept]
        newest = max(batch.seen, key=lambda pair: (pair[1], pair[0]), default=None)
        with self.engine.begin() as conn:
            if seen:  # a customer stored as deleted is left out of the metrics from now on
                deleted_at = {
                    e.object_id: e.created
                    for e in batch.events
                    if e.type == "customer.deleted" and e.object_id is not None
                }
                stamp_deletions(conn, self.account_id, started, deleted_at)
            self._save_state(
                conn,
                mode="incremental",
                events_cursor_created=started,
                events_cursor=newest[0] if newest else state.events_cursor,
                events_seen=seen_after(batch.seen, started - OVERLAP),
                rejected=merged,
            )
        return SyncOutcome(
            mode="incremental", note=note, rejected=merged, events=batch.events, events_skipped=batch.skipped
        )

    def _refetch(self, name: str, ids: list[str], rejected: list[Obj]) -> set[str]:
        """Read each changed object again (an event's copy may be stale) and store it; the ids stored.

        The reads go `workers` at a time, as the full sync's pages do, and each run of up to PAGE objects is
        stored in one transaction: read one after the other and stored one by one, 1,000 changed objects
        cost 1,000 round trips to Stripe end to end (minutes at Stripe's latency) and 1,000 commits. The
        account's request budget (the limiter under `reader`) still spaces every request."""
        seen: set[str] = set()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="stripe-refetch")
        try:
            for n in range(0, len(ids), PAGE):
                found = pool.map(lambda obj_id: self._reread(name, obj_id), ids[n : n + PAGE])
                objects = [obj for obj in found if obj is not None]
                if objects:
                    seen |= self._store(name, objects, rejected)
        finally:
            pool.shutdown(cancel_futures=True)  # a failed read (revoked key) ends the run without the rest
        return seen

    def _reread(self, name: str, obj_id: str) -> Obj | None:
        """One changed object as Stripe has it now, its embedded list completed; a deleted customer as a
        deletion; None for another object gone (a deleted draft or price: keep what we stored)."""
        try:
            obj: Obj = self.reader.get(f"/v1/{name}/{obj_id}")
        except NotFound:
            if name != "customers":
                return None
            return {"id": obj_id, "object": "customer", "deleted": True}
        complete(self.reader, name, obj)
        return obj

    def _store(self, name: str, objects: list[Any], rejected: list[Obj]) -> set[str]:
        for obj in objects:
            complete(self.reader, name, obj)  # an invoice's lines, a subscription's items past the embedded
        with self.engine.begin() as conn:
            ids, bad = store_page(conn, self.account_id, name, objects)
            changes.note_page(conn, self.account_id, name, objects)  # what the next rebuild recomputes
        rejected.extend(bad)
        self._count(name, len(ids))
        return ids


class _FullRun:
    """The fetchers and the single writer of one full sync (see the module docstring)."""

    def __init__(self, syncer: Syncer, cp: Obj) -> None:
        self.s = syncer
        self.cp = cp
        self.queue: queue.Queue[tuple[str, str, Page | BaseException | None]] = queue.Queue(
            maxsize=syncer.workers * 2
        )
        self.stop = threading.Event()
        self.active = 0
        self.written = 0  # objects stored by this run
        self.analyze_at = ANALYZE_FIRST  # ... when the tables' statistics are next refreshed
        self.pages = 0  # pages stored by this run
        self.collected_at = 0  # ... when the young generations were last collected
        self.writer: SeparateWriter | None = None  # the separate writer process of a SQLite sync (run)
        self.tx: Connection | SeparateWriter | None = None  # the writer's open transaction, if any (_write)
        self.tx_opened = 0.0  # when it was opened (time.monotonic)
        self.uncommitted: list[tuple[str, int]] = []  # (list, objects) stored in it, counted once committed

    def run(self) -> None:
        # Pages are trees of dicts and lists, tens of thousands of containers each, and up to a queue of them
        # is alive at once: left on, the collector walked them (and the whole heap) again and again for
        # nothing, about a fifth of a full sync's time. The few cycles the HTTP stack makes are collected
        # while young, every COLLECT_EVERY pages (_commit).
        with (
            without_cycle_collection(),
            ThreadPoolExecutor(max_workers=self.s.workers, thread_name_prefix="stripe-sync") as pool,
            ThreadPoolExecutor(max_workers=self.s.workers, thread_name_prefix="stripe-lines") as lines,
        ):
            self.lines = lines
            try:
                if self.s.separate_writer:
                    self.writer = SeparateWriter(self.s.engine)
                self._loop(pool)
                self._commit()
                self._settle()
            finally:
                self.stop.set()
                self._drain()
                if self.tx is not None:  # a failure of our own: its pages go, the stored checkpoint stays
                    if isinstance(self.tx, SeparateWriter):
                        self.tx.rollback()
                    else:
                        self.tx.close()  # rolls the open transaction back
                    self.tx = None
                if self.writer is not None:
                    self.writer.close()

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        for name, seg in self.cp["segments"].items():
            if not seg["done"]:
                self._start(pool, name, seg)
        self._maybe_split(pool)
        while self.active:
            try:
                item = self.queue.get(timeout=self._due())
            except queue.Empty:  # nothing came while a transaction was open: commit what it holds
                self._commit()
                continue
            if item[0] == "page":
                batch = [item]
                # When the writer falls behind, pages queue up: take them at once.
                while len(batch) < BATCH and batch[-1][0] == "page":
                    try:
                        batch.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                pages = [(name, page) for kind, name, page in batch if kind == "page"]
                self._write(pages)  # type: ignore[arg-type]
                item = batch[-1]
            self._control(pool, item)

    def _control(self, pool: ThreadPoolExecutor, item: tuple[str, str, Page | BaseException | None]) -> None:
        """A fetcher finished (maybe the customers: then invoices can be split) or failed (stop the run)."""
        kind, _, payload = item
        if kind == "error":  # what is stored so far stays: the next run resumes after it
            assert isinstance(payload, BaseException)
            self._commit()
            raise payload
        if kind == "done":
            self.active -= 1
            self._commit()  # the split below reads the customers stored
            self._settle()
            self._maybe_split(pool)

    def _due(self) -> float | None:
        """How long the writer may wait for the next page before the open transaction is due (None: none
        open, wait as long as it takes)."""
        if self.tx is None:
            return None
        return max(0.0, self.tx_opened + TX_SECONDS - time.monotonic())

    def _write(self, batch: list[tuple[str, Page]]) -> None:
        """Store pages in the open transaction (opening one); it commits once TX_SECONDS old (_commit)."""
        if self.tx is None:
            self.tx_opened = time.monotonic()
            if self.writer is not None:
                self.tx = self.writer  # which opens its transaction with the first statement
            else:
                self.tx = self.s.engine.connect()
                self.tx.begin()
                # safe: the checkpoint commits with its pages (store.py says why)
                commit_without_waiting(self.tx)
        for name, page in batch:
            seg = self.cp["segments"][name]
            seg["after"] = page.last_id
            seg["done"] = not page.has_more
            if seg["list"] == "invoices":  # how far back in its created range it got: the progress share
                seg["oldest"] = oldest_created(page.objects, seg.get("oldest"))
            listing = self.cp.get("listing", self.cp["started"])
            ids, bad = store_page(self.tx, self.s.account_id, seg["list"], page.objects, listing)
            self.cp["rejected"].extend(bad)
            self.uncommitted.append((seg["list"], len(ids)))
        self.pages += len(batch)
        if self._due() == 0.0:
            self._commit()

    def _commit(self) -> None:
        """Commit the open transaction with the segments' cursors past its pages, then count what it stored.

        One transaction holds the pages of up to TX_SECONDS: every commit writes each database page it changed
        once, and a page of invoices changes a leaf of each (account, customer) index per customer in it, so
        the fewer the commits, the fewer times the same index pages are written. At 100,000 customers, where
        those indexes far outgrow the page cache, commits of a page or a few (as many as were queued) took a
        quarter of the full sync. A sync killed meanwhile loses at most those seconds of work and resumes
        from the last commit; other writers wait at most that long for the database.

        A separate writer commits while this thread goes on; what it stored is counted once it has committed
        (by the next commit at the latest, or `_settle`)."""
        if self.tx is None:
            return
        self.s._save_state(self.tx, checkpoint={"full": self.cp})
        stored, self.uncommitted = self.uncommitted, []
        if isinstance(self.tx, SeparateWriter):
            self.tx.commit(lambda: self._counted(stored))
        else:
            self.tx.commit()
            self.tx.close()
            self._counted(stored)
        self.tx = None
        if self.pages >= self.collected_at + COLLECT_EVERY:
            self.collected_at = self.pages
            gc.collect(1)  # the young generations only: what was allocated since the last collection
        if self.written >= self.analyze_at:  # each time the stored rows doubled: a few times in all
            self.analyze_at = 2 * self.written
            with self.s.engine.begin() as conn:
                refresh_statistics(conn)

    def _counted(self, stored: list[tuple[str, int]]) -> None:
        for list_name, n in stored:
            self.s._count(list_name, n, self._share(list_name))
        self.written += sum(n for _, n in stored)

    def _settle(self) -> None:
        """Wait for the separate writer's commits (before reading what they stored, and at the end)."""
        if self.writer is not None:
            self.writer.settle()

    def _share(self, list_name: str) -> float | None:
        """How much of a list is read: invoices estimated from their created ranges (pages.range_share); the
        other lists have no total to compare with, so only 1.0 once done, else unknown."""
        segments = [seg for seg in self.cp["segments"].values() if seg["list"] == list_name]
        if list_name == "invoices":
            return range_share(segments, self.cp.get("invoice_span"))
        return 1.0 if segments and all(seg["done"] for seg in segments) else None

    def _maybe_split(self, pool: ThreadPoolExecutor) -> None:
        """Once customers are stored, split the invoice history into created ranges and fetch them at once."""
        if self.cp["invoice_parts"] is not None or not self.cp["segments"]["customers"]["done"]:
            return
        parts = self.s.invoice_parts(self.cp["started"])
        self.cp["invoice_parts"] = len(parts)
        self.cp["invoice_span"] = [self.s.history_start, self.cp["started"]]
        for n, (gte, lt) in enumerate(parts):
            self.cp["segments"][f"invoices:{n}"] = {
                "list": "invoices",
                "gte": gte,
                "lt": lt,
                "after": None,
                "done": False,
            }
        with self.s.engine.begin() as conn:
            self.s._save_state(conn, checkpoint={"full": self.cp})
        for n in range(len(parts)):
            name = f"invoices:{n}"
            self._start(pool, name, self.cp["segments"][name])

    def _start(self, pool: ThreadPoolExecutor, name: str, seg: Obj) -> None:
        self.active += 1
        pool.submit(self._fetch, name, dict(seg))

    def _put(self, item: tuple[str, str, Page | BaseException | None]) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _fetch(self, name: str, seg: Obj) -> None:
        try:
            params = list_params(LISTS[seg["list"]], seg["gte"], seg["lt"])
            list_name = seg["list"]
            for page in iter_pages(self.s.reader, f"/v1/{list_name}", params, seg["after"]):
                # invoices with more lines than embedded, subscriptions with more items: the calls for the
                # rest go out side by side
                long = [o for o in page.objects if needs_completing(list_name, o)]
                for _ in self.lines.map(lambda o: complete(self.s.reader, list_name, o), long):
                    pass
                if not self._put(("page", name, page)):
                    return
            self._put(("done", name, None))
        except BaseException as exc:  # handed to the writer, which stops the run and keeps the checkpoint
            self._put(("error", name, exc))

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return
