"""Why `explain` says a line is left out (worker/left_out.py): a reason to read, not the line's class."""

from __future__ import annotations

from typing import Any

from worker.left_out import carried_from, left_out

DAY = 86_400
T = 100 * DAY


def line(**overrides: Any) -> dict[str, Any]:
    base = {
        "line_id": "il_1",
        "klass": "recurring",
        "reason": "parent.type is subscription_item_details",
        "excluded_reason": None,
        "period_start": T - 30 * DAY,
        "period_end": T - DAY,
        "mrr_end": T - DAY,
    }
    return base | overrides


def test_each_reason() -> None:
    assert left_out(line(excluded_reason="void invoice"), T, {})[0] == "void invoice"
    assert "draft" in left_out(line(excluded_reason="draft invoice"), T, {})[1]
    assert "exchange rate" in left_out(line(excluded_reason="missing_rate"), T, {})[1]
    assert left_out(line(klass="one_time"), T, {})[0] == "one_time"
    assert left_out(line(klass="proration"), T, {})[0] == "proration"
    assert left_out(line(), T, {}) == ("period_ended", "its period ended on 1970-04-10")
    code, why = left_out(line(period_start=T + DAY, period_end=T + 31 * DAY, mrr_end=T + 31 * DAY), T, {})
    assert code == "not_started" and "starts on 1970-04-12" in why
    code, why = left_out(line(period_end=T + 10 * DAY, mrr_end=T - 5 * DAY), T, {})
    assert code == "cut_short" and "stopped counting on 1970-04-06" in why


def test_carried_forward_usage() -> None:
    upcoming = line(line_id="upcoming:si_1:100", reason="metered usage carried forward from line il_1")
    carried = carried_from([line(), upcoming])
    assert carried == {"il_1": "upcoming:si_1:100"}
    code, why = left_out(line(), T, carried)
    assert code == "carried_forward" and "carried forward by upcoming:si_1:100" in why
