"""The ledger repository's reads for commands and signals (worker/mrr_queries.py), SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine

from metrics.calendar import utc_now
from metrics.ledger import ClassifiedLine, FxRate, MrrSnapshot
from metrics.mrr import SnapshotSpreader
from metrics.rates import RatesError
from metrics.tables import table_of
from tests.support.rebuild_worlds import T, monthly_world
from tests.support.sql_capture import capture_sql
from tests.support.stripe_rows import make_account, store
from tests.support.watch_world import build_paying_world, connect_synced
from worker import mrr_queries
from worker.demo import builders as b
from worker.demo.sample import build_sample_world
from worker.demo.stripe_server import FakeStripe, StripeWorld
from worker.models import Account
from worker.mrr_queries import (
    FEW_INSTANTS,
    cohort_sums,
    first_counted_start,
    has_lines,
    has_snapshots,
    missing_rate_warnings,
    missing_rate_warnings_at,
    points_for,
    risk_lines,
    snapshots_until,
    top_fifth_floor,
)
from worker.rates import import_rates
from worker.rebuild import rebuild_account
from worker.report.cohort_grid import cohort_sums as python_sums

S = table_of(MrrSnapshot)


def at_utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _euro_customer() -> list[dict]:
    euro = b.price("price_eur", "prod_pro", 9_000, currency="eur")
    line = b.line("il_eur", "in_eur", 9_000, (T(2026, 2), T(2026, 3)), currency="eur", price_obj=euro)
    invoice = b.invoice("in_eur", "cus_eur", [line], created=T(2026, 2), currency="eur")
    return [b.customer("cus_eur", "Euro GmbH", currency="eur"), euro, invoice]


def test_has_lines_and_the_first_counted_start(engine: Engine) -> None:
    account, empty = make_account(engine, "acme"), make_account(engine, "empty")
    store(engine, account, monthly_world())
    rebuild_account(engine, account, date(2026, 3, 20))
    with engine.connect() as conn:
        assert has_lines(conn, account.id or 0, "cus_a")
        assert not has_lines(conn, account.id or 0, "cus_nobody")
        assert not has_lines(conn, empty.id or 0, "cus_a")
        assert first_counted_start(conn, account.id or 0) == T(2026, 1)
        assert first_counted_start(conn, empty.id or 0) is None


def _seats_customer() -> list[dict]:
    """Seven seats less a 600 discount: the invoice line's quantity and discounts the signals read."""
    seat = b.price("price_seat", "prod_pro", 1_000)
    line = b.line(
        "il_seats",
        "in_seats",
        6_400,
        (T(2026, 2), T(2026, 3)),
        price_obj=seat,
        quantity=7,
        discounts=[600],
        subscription="sub_seats",
        subscription_item="si_seats",
    )
    invoice = b.invoice("in_seats", "cus_seats", [line], created=T(2026, 2), subscription="sub_seats")
    item = b.subscription_item("si_seats", "sub_seats", seat, period=(T(2026, 2), T(2026, 3)))
    return [
        seat,
        b.customer("cus_seats", "Seats Ltd"),
        invoice,
        b.subscription("sub_seats", "cus_seats", [item]),
    ]


def test_risk_lines_keep_counted_recurring_lines_and_those_only_missing_a_rate(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world() + _euro_customer() + _seats_customer())
    rebuild_account(engine, account, date(2026, 3, 20))
    with engine.connect() as conn:
        lines = {ln.line_id: ln for ln in risk_lines(conn, account.id or 0)}
    # the void duplicate and the one-time setup fee are left out; the EUR line waits for its rate
    upcoming = "upcoming:si_seats:1769904000"  # the seats' next period, carried forward: no invoice line
    assert set(lines) == {"il_a0", "il_a1", "il_a2", "il_b", "il_eur", "il_seats", upcoming}
    assert (lines[upcoming].quantity, lines[upcoming].discount_total) == (None, 0)
    assert (lines["il_seats"].quantity, lines["il_seats"].discount_total) == (7, 600)
    assert (lines["il_b"].quantity, lines["il_b"].discount_total) == (1, 0)
    beta = lines["il_b"]
    assert (beta.customer_id, beta.price_id, beta.subscription_item_id, beta.usage_type) == (
        "cus_b",
        "price_y",
        "si_b",
        "licensed",
    )
    assert (beta.period_start, beta.period_end, beta.mrr_end) == (T(2026, 1), T(2027, 1), T(2026, 3, 10))
    assert (beta.net_amount, beta.monthly_amount, beta.currency) == (120_000, 10_000, "usd")
    assert lines["il_eur"].currency == "eur"


def test_risk_lines_read_quantities_and_discounts_from_the_ledger_alone(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild writes each line's stored quantity and discounts into the ledger; the read never joins the
    wide invoice-line table (a random read of it per recurring line: 12.6-15.1 s at 100,000 customers)."""
    account = make_account(engine)
    store(engine, account, monthly_world() + _seats_customer())
    rebuild_account(engine, account, date(2026, 3, 20))
    sent = capture_sql(monkeypatch, mrr_queries)
    with engine.connect() as conn:
        lines = {ln.line_id: ln for ln in risk_lines(conn, account.id or 0, ["cus_seats"])}
    assert (lines["il_seats"].quantity, lines["il_seats"].discount_total) == (7, 600)
    assert len(sent) == 1 and "ledger_line" in sent[0] and "stripe_invoice_line" not in sent[0]


def test_snapshots_until_a_day(engine: Engine) -> None:
    account = make_account(engine)
    store(engine, account, monthly_world())
    rebuild_account(engine, account, date(2026, 3, 20))
    with engine.connect() as conn:
        rows = sorted(snapshots_until(conn, account.id or 0, date(2026, 2, 1)))
    assert rows == [
        ("cus_a", date(2026, 1, 1), 10_000),
        ("cus_a", date(2026, 2, 1), 10_000),
        ("cus_b", date(2026, 1, 1), 10_000),
        ("cus_b", date(2026, 2, 1), 10_000),
    ]


def test_import_rates_upserts_and_a_bad_file_stores_nothing(engine: Engine) -> None:
    assert import_rates(engine, "date,currency,rate\n2026-01-01,EUR,1.10\n2026-02-01,gbp,1.25\n", "usd") == 2
    assert import_rates(engine, "date,currency,rate\n2026-01-01,eur,1.08\n", "usd") == 1
    with pytest.raises(RatesError):
        import_rates(engine, "date,currency,rate\n2026-03-01,eur,1.2\nnot a date,eur,1\n", "usd")
    with engine.connect() as conn:
        rates = {
            (r.reporting_currency, r.currency, r.day): str(r.rate)
            for r in conn.execute(select(table_of(FxRate)))
        }
    assert {k: v.rstrip("0") for k, v in rates.items()} == {
        ("usd", "eur", date(2026, 1, 1)): "1.08",
        ("usd", "gbp", date(2026, 2, 1)): "1.25",
    }


def stored_and_built(engine: Engine, world: StripeWorld, today: date) -> Account:
    """The sample world's objects stored (invoices with all their lines), the ledger built as of `today`."""
    objs = [
        o
        for kind in ("customer", "product", "price", "subscription")
        for o in world.collections[kind].by_id.values()
    ]
    invoices = world.collections["invoice"].by_id
    objs += [{**o, "lines": {**o["lines"], "data": world.invoice_lines[i]}} for i, o in invoices.items()]
    account = make_account(engine)
    store(engine, account, objs)
    rebuild_account(engine, account, today)
    return account


def test_cohort_sums_of_the_database_equal_those_summed_in_python(engine: Engine) -> None:
    world = build_sample_world(seed=3, customers=80, months=14, end=date(2026, 6, 1))
    account = stored_and_built(engine, world, date(2026, 6, 10))
    last_month = date(2026, 5, 1)  # the June snapshots are left out
    with engine.connect() as conn:
        sizes, kept = cohort_sums(conn, account.id or 0, last_month)
        rows = snapshots_until(conn, account.id or 0, date(2026, 6, 10))
    expected = python_sums(rows, last_month)
    assert len(expected.sizes) >= 10  # a cohort per month of the sample, most of them
    assert {f: (n, mrr) for f, n, mrr in sizes} == expected.sizes
    assert {(f, d): mrr for f, d, mrr in kept} == expected.kept


def test_the_top_fifth_floor(engine: Engine) -> None:
    """Eleven customers paying $10 .. $110: the top fifth is the ceil(11 / 5) = 3 largest, so the floor is
    the third largest, customer 8's $90 (worked by hand)."""
    with FakeStripe(build_paying_world(customers=11)) as fake:
        account = connect_synced(engine, fake.url, None)
    with engine.connect() as conn:
        assert has_snapshots(conn, account.id or 0)
        assert top_fifth_floor(conn, account.id or 0, utc_now().date()) == 9000
        assert top_fifth_floor(conn, account.id or 0, date(2000, 1, 1)) is None  # no snapshot that early


def test_a_few_far_days_read_only_their_lines_and_give_the_rows_of_every_line(engine: Engine) -> None:
    """The metrics windows' new days (a month and a year back) are filled from the lines that cover them
    only; the rows are those SnapshotSpreader gives over every counted line, and those of a fill of many days
    (which reads every line of their window)."""
    world = build_sample_world(seed=5, customers=80, months=18, end=date(2026, 6, 1))
    account = stored_and_built(engine, world, date(2026, 6, 10))
    account_id = account.id or 0
    few = [date(2025, 2, 17), date(2025, 8, 3), date(2026, 1, 28)]
    many = few + [date(2025, 3, 1) + timedelta(days=20 * n) for n in range(FEW_INSTANTS)]
    points = points_for(few)
    spread = SnapshotSpreader(points)
    with engine.connect() as conn:
        every_line = {
            (customer, points[i].day, mrr, one_time, plan)
            for customer, entries in mrr_queries._entries(conn, account_id)  # no filter: every counted line
            for i, mrr, one_time, plan in spread(entries)
        }
    read: dict[int, set[tuple[object, ...]]] = {}
    for days in (few, many):
        with engine.begin() as conn:
            mrr_queries.delete_snapshot_days(conn, account_id, many)
            mrr_queries.fill_snapshot_days(conn, account_id, days)
        with engine.connect() as conn:
            rows = conn.execute(
                select(S.c.customer_id, S.c.day, S.c.mrr, S.c.one_time, S.c.plan).where(
                    S.c.account_id == account_id, S.c.day.in_(few)
                )
            )
            read[len(days)] = {tuple(r) for r in rows}
    assert len(every_line) > 60
    assert any(one_time and not mrr for _, _, mrr, one_time, _ in every_line)  # one-time only rows too
    assert {day for _, day, *_ in every_line} == set(few)
    assert read[len(few)] == every_line == read[len(many)]


def test_missing_rate_warnings_at_several_instants_are_those_asked_one_at_a_time(engine: Engine) -> None:
    """The metrics run reads the lines left out for a missing rate once for its three days."""
    account = make_account(engine)
    lines = [  # (line, currency, start, end, monthly): two currencies, lines covering some instants only
        ("il_1", "eur", T(2026, 1), T(2026, 2), 12_000),
        ("il_2", "eur", T(2026, 1, 15), T(2026, 3), 5_000),
        ("il_3", "gbp", T(2026, 2), T(2026, 4), 7_000),
        ("il_4", "eur", T(2026, 3), T(2026, 4), 900),
        ("il_5", "gbp", T(2025, 6), T(2025, 7), 100),
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(table_of(ClassifiedLine)),
            [
                {
                    "account_id": account.id,
                    "line_id": line,
                    "invoice_id": f"in_{line}",
                    "customer_id": f"cus_{n % 2}",
                    "klass": "recurring",
                    "reason": "r",
                    "counted": False,
                    "excluded_reason": "missing_rate",
                    "period_start": start,
                    "period_end": end,
                    "mrr_end": end,
                    "currency": currency,
                    "net_amount": monthly,
                    "monthly_amount": monthly,
                }
                for n, (line, currency, start, end, monthly) in enumerate(lines)
            ],
        )
    moments = [at_utc(2026, 1, 20), at_utc(2026, 2, 1), at_utc(2026, 3, 10), at_utc(2024, 1, 1)]
    with engine.connect() as conn:
        together = missing_rate_warnings_at(conn, account.id or 0, moments)
        apart = [missing_rate_warnings(conn, account.id or 0, at) for at in moments]
    assert together == apart
    assert [len(found) for found in together] == [1, 2, 2, 0]
