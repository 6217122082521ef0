"""Coverage by construction: the suites hold every combination of factor levels they
declare, with the levels read from the lists that define them."""

import pytest

from backends.base import LAYOUTS
from backends.dtypes import DTYPES
from harness.problems import inputs, suites


@pytest.mark.parametrize("suite", sorted(suites.COVERAGE))
def test_suite_holds_every_declared_combination(suite):
    assert suites.missing(suite) == []


def test_levels_come_from_the_defining_lists():
    levels = suites.levels()
    assert levels["layout"] == LAYOUTS and levels["dtype"] == DTYPES
    assert set(levels["distribution"]) == set(inputs.DISTRIBUTIONS)


def test_default_covers_layout_dtype_distribution_and_rank_layout_dtype():
    declared = suites.COVERAGE["default"]
    assert ("layout", "dtype", "distribution") in declared and ("rank", "layout", "dtype") in declared
    product = {(c.layout, c.dtype, c.distribution) for c in suites.get("default")}
    expected = {(layout, dtype, distribution) for layout in LAYOUTS for dtype in DTYPES
                for distribution in inputs.DISTRIBUTIONS
                if dtype not in inputs.UNREPRESENTABLE.get(distribution, ())}
    assert expected <= product and len(expected) == 198


def test_a_distribution_added_and_not_covered_is_reported(monkeypatch):
    cases = suites.get("default")  # the suite as it stood before the new distribution
    monkeypatch.setitem(inputs.DISTRIBUTIONS, "a_new_distribution", inputs.DISTRIBUTIONS["normal"])
    found = suites.missing("default", cases)
    assert {"layout": "channels_last", "dtype": "float16", "distribution": "a_new_distribution"} in found
    assert len([f for f in found if f.get("distribution") == "a_new_distribution"]) == 12  # 3 layouts x 4 dtypes
    # and the suite built now covers it by construction
    assert suites.missing("default") == []


def test_a_layout_combination_dropped_is_reported():
    cases = [c for c in suites.get("default") if not (c.layout == "strided" and c.dtype == "bfloat16"
                                                       and c.distribution == "offset")]
    assert {"layout": "strided", "dtype": "bfloat16", "distribution": "offset"} in suites.missing("default", cases)
    assert {"rank": 4, "layout": "strided", "dtype": "bfloat16"} not in suites.missing("default", cases)


def test_channels_last_meets_ill_conditioned_inputs_at_every_rank():
    ranks = {len(c.shape) for c in suites.get("default") if c.layout == "channels_last" and c.distribution == "offset"}
    assert ranks == {3, 4, 5}
