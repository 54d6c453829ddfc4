"""Size bands, labels and the folding of (plan, band, signup month) groups into segments."""

from __future__ import annotations

import pytest

from metrics.cohort_sql import GroupKey
from metrics.cohorts import CustomerPair, aggregate, fold
from metrics.payload import segment_aggregates, segments_json
from metrics.segments import DEFAULT_SIZE_BANDS, NO_PLAN, SizeBands, band_index


def test_default_band_labels_and_edges() -> None:
    assert DEFAULT_SIZE_BANDS.labels() == ["<100", "100-1k", "1k-10k", ">=10k"]
    assert DEFAULT_SIZE_BANDS.minor_edges("usd") == [10_000, 100_000, 1_000_000]
    assert DEFAULT_SIZE_BANDS.minor_edges("jpy") == [100, 1000, 10000]  # zero-decimal: no minor unit


@pytest.mark.parametrize(
    ("cents", "label"),
    [
        (9_999, "<100"),
        (10_000, "100-1k"),
        (99_999, "100-1k"),
        (100_000, "1k-10k"),
        (1_000_000, ">=10k"),
    ],
)
def test_band_edges_belong_to_the_band_above(cents: int, label: str) -> None:
    assert DEFAULT_SIZE_BANDS.label_for(cents, "usd") == label


def test_configurable_bands() -> None:
    bands = SizeBands.parse("50, 500, 2500")
    assert bands.labels() == ["<50", "50-500", "500-2.5k", ">=2.5k"]
    assert band_index(60_000, bands.minor_edges("eur")) == 2
    with pytest.raises(ValueError):
        SizeBands.parse("500,50")
    with pytest.raises(ValueError):
        SizeBands.parse("a,b")


def test_segments_partition_the_cohort_and_keep_their_own_warnings() -> None:
    pro = aggregate([CustomerPair(50_000, 60_000)] * 40)  # 40 customers, band 100-1k
    basic = aggregate([CustomerPair(5_000, 0)] * 3)  # 3 customers, band <100
    groups = {
        GroupKey("Pro", 1, "2025-01"): pro,
        GroupKey(None, 0, "2025-03"): basic,
    }
    folded = segment_aggregates(groups, DEFAULT_SIZE_BANDS)
    assert folded["plan"] == {"Pro": pro, NO_PLAN: basic}
    assert folded["size"] == {"100-1k": pro, "<100": basic}
    for kind in ("plan", "size", "cohort"):
        assert fold(folded[kind].values()) == pro + basic
    out = segments_json(groups, DEFAULT_SIZE_BANDS, "usd", "T12M")
    assert list(out["size"]) == ["<100", "100-1k"]  # ascending bands, not alphabetical
    assert [w["code"] for w in out["plan"][NO_PLAN]["warnings"]] == ["small_cohort"]
    assert out["plan"]["Pro"]["warnings"] == []
    assert out["cohort"]["2025-01"]["nrr"] == 1.2
    assert out["cohort"]["2025-03"]["nrr"] == 0.0
