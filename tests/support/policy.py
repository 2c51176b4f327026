"""Strategies and bounds of the threshold-policy suite (tests/unit/sealing/test_policy.py)."""

from __future__ import annotations

from hypothesis import strategies as st

from vitalchain.vitals import Vital, from_fixed, to_fixed

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
EXTREMES = [INT32_MIN, INT32_MIN + 1, INT32_MIN + 2, -1, 0, 1]
EXTREMES += [INT32_MAX - 2, INT32_MAX - 1, INT32_MAX]
VALUES_PER_POLICY = 10  # contract calls per example, the bounds included

int32s = st.integers(INT32_MIN, INT32_MAX)
vitals = st.sampled_from(list(Vital))


def _in_int32(values: list[int]) -> list[int]:
    return [v for v in values if INT32_MIN <= v <= INT32_MAX]


@st.composite
def int32_ranges(draw: st.DrawFn) -> tuple[int, int]:
    """``low < high``, anywhere in ``int32``: often at its edges, sometimes one apart."""
    edge = st.one_of(int32s, st.sampled_from(EXTREMES))
    low = draw(edge.filter(lambda v: v < INT32_MAX))
    high = draw(
        st.one_of(
            st.integers(low + 1, INT32_MAX),
            st.sampled_from(_in_int32([low + 1, low + 2, INT32_MAX])),
            edge.filter(lambda v: v > low),
        )
    )
    return low, high


@st.composite
def policies_with_values(draw: st.DrawFn) -> tuple[Vital, int, int, list[int]]:
    """A vital, a range and values to test it with: the bounds, bound ± 1, extremes, any."""
    vital = draw(vitals)
    low, high = draw(int32_ranges())
    special = _in_int32([low - 1, low, low + 1, high - 1, high, high + 1, *EXTREMES])
    near = st.integers(max(INT32_MIN, low - 3), min(INT32_MAX, high + 3))
    values = draw(
        st.lists(
            st.one_of(st.sampled_from(special), near, int32s),
            min_size=VALUES_PER_POLICY - 2,
            max_size=VALUES_PER_POLICY - 2,
        )
    )
    return vital, low, high, [low, high, *values]


@st.composite
def plausible_policy_and_readings(draw: st.DrawFn) -> tuple[Vital, int, int, list[float]]:
    """A range inside the vital's plausible span, and float readings across that span."""
    vital = draw(vitals)
    lo, hi = vital.info.plausible
    fixed = st.integers(to_fixed(lo), to_fixed(hi))
    low = draw(fixed.filter(lambda v: v < to_fixed(hi)))
    high = draw(st.integers(low + 1, to_fixed(hi)))
    cent = 1 / 100
    bounds = [from_fixed(low), from_fixed(high)]
    beside = [from_fixed(low) - cent, from_fixed(high) + cent, from_fixed(low) + cent / 2]
    readings = draw(
        st.lists(
            st.one_of(
                st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                st.sampled_from(bounds + beside),
            ),
            min_size=VALUES_PER_POLICY,
            max_size=VALUES_PER_POLICY,
        )
    )
    return vital, low, high, readings
