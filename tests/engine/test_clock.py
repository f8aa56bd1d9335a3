import pytest

from posguard.clock import Clock, ClockError, SystemClock, VirtualClock


def test_both_clocks_satisfy_the_protocol():
    assert isinstance(SystemClock(), Clock)
    assert isinstance(VirtualClock(), Clock)


def test_virtual_sleep_moves_time_without_waiting():
    clock = VirtualClock(start=1000.0)
    clock.sleep(30)
    assert clock.now() == 1030.0 and clock.monotonic() == 30.0 and clock.slept == [30]


def test_timers_fire_in_due_order_and_see_their_due_time():
    clock = VirtualClock(start=0.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(5, lambda: seen.append(("b", clock.monotonic())))
    clock.call_later(2, lambda: seen.append(("a", clock.monotonic())))
    cancelled = clock.call_later(3, lambda: seen.append(("x", clock.monotonic())))
    cancelled.cancel()
    clock.advance(4)
    assert seen == [("a", 2.0)]
    clock.advance(10)
    assert seen == [("a", 2.0), ("b", 5.0)] and clock.monotonic() == 14.0


def test_time_never_runs_backwards():
    clock = VirtualClock(start=100.0)
    with pytest.raises(ClockError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ClockError):
        clock.set(50.0)
