"""pytest fixtures of the reader rig: thin wrappers over firmware_sim.rig. Use them with ``from tests.rig.fixtures import *``.

- ``pcscd_rig``: this process's private pcscd (session-wide, restarted only when needed) (vpcd on a free port pair); its socket is
  exported as PCSCLITE_CSOCK_NAME so pyscard, pcsc_scan and opensc-tool all talk to it.
- ``card_factory``: ``card_factory(profile="visa_credit_sig", faults=(), **kw) -> VpcdCard``,
  a card subprocess in "Virtual PCD 00 00" (``slot=1`` for "Virtual PCD 00 01"); removed at teardown.
- ``visa_card`` / ``unionpay_card`` / ``mastercard_card``: one ready card of each profile.
- ``twin_factory``: ``twin_factory(profile, faults=(), echo=True, **kw) -> TwinReader``
  (GemPC Twin pty + libccidtwin in pcscd).
- ``magstripe_factory``: ``magstripe_factory(profile, faults=(), bcc=False, **kw) -> MagstripeReader``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firmware_sim.rig.pcscd import PcscdRig, get_rig, shutdown_rig
from firmware_sim.rig.sims import (
    MagstripeReader,
    TwinReader,
    VpcdCard,
    magstripe_reader,
    twin_reader,
    vpcd_card,
)

__all__ = ["card_factory", "magstripe_factory", "mastercard_card", "pcscd_rig", "pcscd_session", "twin_factory",
           "unionpay_card", "visa_card"]


@pytest.fixture(scope="session")
def pcscd_session() -> Iterator[PcscdRig]:
    """The process's rig; pcscd is stopped and reaped at the end of the session."""
    rig = get_rig()
    yield rig
    shutdown_rig()


@pytest.fixture
def pcscd_rig(pcscd_session: PcscdRig) -> PcscdRig:
    """The rig with pcscd running and vpcd loaded (a no-op when it already is)."""
    pcscd_session.ensure(vpcd=True)
    return pcscd_session


@pytest.fixture
def card_factory(pcscd_rig: PcscdRig) -> Iterator[Callable[..., VpcdCard]]:
    with contextlib.ExitStack() as stack:
        def make(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (),
                 **kwargs: Any) -> VpcdCard:
            return stack.enter_context(vpcd_card(profile, faults, rig=pcscd_rig, **kwargs))
        yield make


@pytest.fixture
def visa_card(card_factory: Callable[..., VpcdCard]) -> VpcdCard:
    return card_factory("visa_credit_sig")


@pytest.fixture
def unionpay_card(card_factory: Callable[..., VpcdCard]) -> VpcdCard:
    return card_factory("unionpay_debit_pin")


@pytest.fixture
def mastercard_card(card_factory: Callable[..., VpcdCard]) -> VpcdCard:
    return card_factory("mastercard_nocvm")


@pytest.fixture
def twin_factory(pcscd_rig: PcscdRig) -> Iterator[Callable[..., TwinReader]]:
    with contextlib.ExitStack() as stack:
        def make(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (),
                 **kwargs: Any) -> TwinReader:
            return stack.enter_context(twin_reader(profile, faults, rig=pcscd_rig, **kwargs))
        yield make


@pytest.fixture
def magstripe_factory() -> Iterator[Callable[..., MagstripeReader]]:
    with contextlib.ExitStack() as stack:
        def make(profile: str = "visa_credit_sig", faults: tuple[str, ...] | list[str] = (),
                 **kwargs: Any) -> MagstripeReader:
            return stack.enter_context(magstripe_reader(profile, faults, **kwargs))
        yield make
