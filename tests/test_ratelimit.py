"""WarnLimiter: a burst per reason, then one line per interval, and the next line logged
carries the count of what was suppressed. The clock is a number."""

from __future__ import annotations

import pytest

from kl2tp.ratelimit import WarnLimiter, suppressed_note


def test_burst_then_suppressed_then_one_per_interval_with_the_count() -> None:
    limiter = WarnLimiter(per_reason_burst=3, interval=10.0)
    assert [limiter.should_log("r", 0.0) for _ in range(3)] == [(True, 0)] * 3
    # 2,000 spoofed datagrams in the same second: not one more line.
    assert all(limiter.should_log("r", 0.5) == (False, 0) for _ in range(2000))
    assert limiter.suppressed("r") == 2000
    # One interval later one token is back: one line, carrying the count, which resets.
    assert limiter.should_log("r", 10.5) == (True, 2000)
    assert limiter.suppressed("r") == 0
    assert limiter.should_log("r", 10.6) == (False, 0)
    assert limiter.should_log("r", 20.5) == (True, 1)


def test_reasons_are_independent() -> None:
    limiter = WarnLimiter(per_reason_burst=1, interval=60.0)
    assert limiter.should_log("a", 0.0) == (True, 0)
    assert limiter.should_log("a", 0.0) == (False, 0)
    assert limiter.should_log("b", 0.0) == (True, 0)
    assert limiter.suppressed("a") == 1
    assert limiter.suppressed("b") == 0
    assert limiter.suppressed("never") == 0


def test_refill_is_capped_at_the_burst() -> None:
    limiter = WarnLimiter(per_reason_burst=2, interval=1.0)
    limiter.should_log("r", 0.0)
    # A long quiet spell refills to the burst, not beyond.
    assert [limiter.should_log("r", 1000.0)[0] for _ in range(4)] == [True, True, False, False]


def test_a_clock_going_backwards_grants_nothing() -> None:
    limiter = WarnLimiter(per_reason_burst=1, interval=5.0)
    assert limiter.should_log("r", 100.0) == (True, 0)
    assert limiter.should_log("r", 50.0) == (False, 0)
    assert limiter.should_log("r", 104.0) == (False, 0)
    assert limiter.should_log("r", 105.0) == (True, 2)


@pytest.mark.parametrize(("burst", "interval"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_bad_parameters(burst: int, interval: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        WarnLimiter(burst, interval)


def test_suppressed_note() -> None:
    assert suppressed_note(0) == ""
    assert suppressed_note(7) == " (7 similar suppressed)"
