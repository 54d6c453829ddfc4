"""Why a line behind a customer's MRR is left out at an instant, as a short code and in words (`explain`).

The line's class says what it is; a reader asks why it does not count *now*: its invoice is a draft or void,
it is a one-time charge or a proration, its period ended (or has not started), the subscription ended or
changed plan part-way, or metered usage has no invoice yet for the current period and the last billed amount
is carried forward in its place (docs/mrr.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from metrics.calendar import utc_day
from metrics.classify import ONE_TIME, PRORATION

CARRIED = "metered usage carried forward from line "

# Left out whatever the instant: the invoice's status, the rate, the line's class.
_ALWAYS = {
    "draft invoice": "its invoice is still a draft: nothing is billed until it is finalized",
    "void invoice": "its invoice was voided: it was never owed",
    "missing_rate": "no exchange rate to the reporting currency for its currency and dates",
    ONE_TIME: "one-time charge (setup, services, a one-off item): it does not recur, so it is not MRR",
    PRORATION: "proration: a one-off adjustment for a change part-way through a period",
}


def carried_from(lines: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The metered lines an upcoming line carries forward: {carried line id: upcoming line id}."""
    return {
        ln["reason"][len(CARRIED) :]: ln["line_id"] for ln in lines if str(ln["reason"]).startswith(CARRIED)
    }


def _day(ts: int) -> str:
    return utc_day(ts).isoformat()


def left_out(line: Mapping[str, Any], t: int, carried: Mapping[str, str]) -> tuple[str, str]:
    """(code, words) for a line that does not count in MRR at instant `t`."""
    always = line["excluded_reason"] or (line["klass"] if line["klass"] in (ONE_TIME, PRORATION) else None)
    if always:
        return always, _ALWAYS.get(always, always)
    return _timing(line, t, carried)


def _timing(line: Mapping[str, Any], t: int, carried: Mapping[str, str]) -> tuple[str, str]:
    """A counted recurring line that does not cover `t`: why not."""
    if t < line["period_start"]:
        return "not_started", f"its period starts on {_day(line['period_start'])}"
    if line["line_id"] in carried:
        return "carried_forward", (
            f"its period ended on {_day(line['period_end'])}; until the usage is invoiced, its amount is "
            f"carried forward by {carried[line['line_id']]}"
        )
    if line["mrr_end"] < line["period_end"] and t >= line["mrr_end"]:
        return "cut_short", (
            f"it stopped counting on {_day(line['mrr_end'])}, before its period's end: the subscription "
            "ended or its plan changed then"
        )
    return "period_ended", f"its period ended on {_day(line['period_end'])}"
