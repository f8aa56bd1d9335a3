"""The service's swipe (issue 11): a chip card swiped is told "insert the card" and nothing is sent; after its chip
read fails, the same swipe goes as a fallback sale (ISO field 22 = 80x) carrying track 2 in field 35. Real parts:
the vpcd card in the rig's pcscd (its GET PROCESSING OPTIONS answers 6F00), the magstripe reader on a pty, the
acquirer simulator on loopback; the wire is what the simulator received."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator, SimConfig
from firmware_sim.rig.sims import VpcdCard, magstripe_reader
from posguard.config import load_config
from posguard.logs import setup_logging
from posguard.service.run import EventLog, Service
from tests.product.test_service import write_config
from tests.rig.fixtures import *  # noqa: F403

pytestmark = pytest.mark.pcscd
VISA_PAN = "4761739001010119"


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Service, HostSimulator, Any, io.StringIO]]:
    with HostSimulator(SimConfig(dialect="iso87ascii")) as sim, magstripe_reader(service_code="201") as mag:
        path = write_config(tmp_path, sim.port)
        path.write_text(path.read_text().replace('name = "Virtual PCD 00 00"', f'name = "Virtual PCD 00 00"\n'
                                                 f'magstripe_port = "{mag.link}"\ncard_wait = 5'))
        cfg, problems = load_config(path)
        assert problems == []
        out = io.StringIO()
        handler = setup_logging("debug", out)
        svc = Service(cfg, EventLog())
        try:
            svc.start()
            yield svc, sim, mag, out
        finally:
            svc.close()
            logging.getLogger("posguard").removeHandler(handler)


def sales(sim: HostSimulator) -> list[dict[str, str]]:
    return [r for r in sim.received if r["t"] == "0200"]


def test_chip_card_swiped_is_refused_then_goes_as_fallback_after_a_failed_chip_read(
        desk: tuple[Service, HostSimulator, Any, io.StringIO], card_factory: Callable[..., VpcdCard]) -> None:
    svc, sim, mag, log = desk
    mag.swipe()
    refused = svc.handle("swipe 1999")
    assert not refused["ok"] and "insert the card" in refused["error"] and "nothing was sent" in refused["error"]
    assert sales(sim) == [] and svc.journal.find_txns() == []

    card_factory("visa_credit_sig", faults=["sw sw=6F00 ins=A8 times=0"])  # the chip answers GPO with 6F00
    failed = svc.handle("sale 1999")
    assert not failed["ok"] and "CardStatusError" in failed["error"] and sales(sim) == []

    mag.swipe()
    sale = svc.handle("swipe 1999")
    assert sale["ok"] and sale["state"] == "signature_pending", sale
    [req] = sales(sim)
    assert req["22"] == "801"  # fallback: the chip failed, the stripe was read in full
    assert req["35"] == "<37 chars>"  # track 2 travelled (the simulator logs only its length)
    assert svc.journal.get_txn(sale["txn"]).entry_mode == "fallback"

    mag.swipe()  # the window was used: the next swipe of the chip card is refused again
    again = svc.handle("swipe 500")
    assert not again["ok"] and "insert the card" in again["error"]
    assert len(sales(sim)) == 1
    assert VISA_PAN not in log.getvalue()
