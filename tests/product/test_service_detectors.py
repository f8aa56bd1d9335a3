"""Issue 13 item 2: in ``posguard run`` the time-driven detectors run — the service's loop, when idle, hands the
till's tick (signature deadlines, follow-ups, reversals pending too long, a batch left open) the engine's clock.
What each detector raises, once, is tested on the till (tests/flows/test_detector_tick.py); this proves the
running service calls it, and that a detector's failure never stops the service."""

from __future__ import annotations

import io
import threading

from posguard.service.run import Service
from tests.product.test_supervisor import service  # noqa: F401 - the fixture: a service on the host simulator


def _run_until_ticked(svc: Service, tick: object) -> threading.Event:
    ticked = threading.Event()

    def observed() -> list[str]:
        ticked.set()
        svc.stopping.set()  # one idle tick is enough: stop the loop
        if isinstance(tick, Exception):
            raise tick
        return []

    svc.till.tick = observed  # type: ignore[method-assign]
    loop = threading.Thread(target=svc.run_loop, name="service-loop", daemon=True)
    loop.start()
    loop.join(timeout=30)
    assert not loop.is_alive()
    return ticked


def test_the_idle_service_runs_the_time_driven_detectors(service: tuple[Service, io.StringIO]) -> None:  # noqa: F811
    svc, _log = service
    assert _run_until_ticked(svc, None).is_set()


def test_a_detector_that_fails_is_logged_and_the_service_goes_on(service: tuple[Service, io.StringIO]  # noqa: F811
                                                                 ) -> None:
    svc, log = service
    assert _run_until_ticked(svc, RuntimeError("detector broke")).is_set()
    assert "tick_failed" in log.getvalue() and "detector broke" in log.getvalue()
