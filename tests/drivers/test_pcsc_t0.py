"""PcscReader's T=0 rounds (61xx -> GET RESPONSE, 6Cxx -> resend with Le) against the base Reader's.

``PcscReader.transmit`` hands a 61xx/6Cxx answer to the base ``Reader._t0_rounds`` over its own exchanges; for
the same card answers it must send the same commands, return the same response or error as the scripted
transport of test_reader_t0.py, and leave no watchdog deadline armed. ``SCardTransmit`` is replaced by the
script: the rest of the driver's path is real.
"""

from __future__ import annotations

import pytest

import posguard.drivers.pcsc as pcsc
from posguard.drivers.errors import ReaderError, TransportError
from posguard.drivers.reader import Response
from tests.drivers.test_reader_t0 import Scripted


class _Deadline:
    deadline = 0.0


def _pcsc_reader(answers: list[str], sent: list[str], monkeypatch: pytest.MonkeyPatch) -> pcsc.PcscReader:
    queue = [list(bytes.fromhex(a)) for a in answers]

    def script(hcard: int, pci: object, apdu: list[int]) -> tuple[int, list[int]]:
        assert hcard == 7 and isinstance(apdu, list)
        sent.append(bytes(apdu).hex().upper())
        return 0, queue.pop(0)

    monkeypatch.setattr(pcsc, "_transmit", script)
    r = object.__new__(pcsc.PcscReader)
    r.name, r.apdu_timeout, r._hcard, r._pci, r._expired = "scripted", 2.0, 7, pcsc._S.SCARD_PCI_T0, False
    r._watchdog = _Deadline()  # type: ignore[assignment]
    monkeypatch.setattr(r, "_settle", lambda: None)  # no pcscd to ask about the slot
    return r


def _outcome(reader: object, apdu: str) -> Response | str:
    try:
        return reader.transmit(bytes.fromhex(apdu))  # type: ignore[attr-defined, no-any-return]
    except ReaderError as e:
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize(("apdu", "answers"), [
    ("00A4040000", ["6F009000"]),
    ("00A404000107" "00", ["6104", "AABB6102", "CCDD9000"]),  # data before a further 61xx is kept
    ("00A404000107" "00", ["6104", "AABBCCDD9000"]),
    ("00B2010C00", ["6C1A", "11" * 0x1A + "9000"]),
    ("80CA9F36", ["6C02", "AAAA9000"]),  # case 1: Le appended
    ("80AE80000100" "00", ["6102", "6985"]),  # an error status after GET RESPONSE is returned
    ("00A404000107" "00", ["AA6104", "6C03", "BBCCDD9000"]),  # 6Cxx discards what came before
    ("00A4040000", ["6101"] * 100),  # endless 61xx: a transport error, not a hang
    ("00A4040000", ["6101", "90"]),  # an answer without status word after GET RESPONSE
])
def test_same_commands_and_answer_as_the_base_reader(apdu: str, answers: list[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    base = Scripted(list(answers))
    sent: list[str] = []
    ours = _pcsc_reader(list(answers), sent, monkeypatch)
    expected = _outcome(base, apdu)
    assert _outcome(ours, apdu) == expected
    assert sent == base.sent
    assert ours._watchdog is not None and ours._watchdog.deadline == 0.0  # no deadline left armed


def test_endless_61xx_names_the_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TransportError, match="61xx/6Cxx after 64 rounds"):
        _pcsc_reader(["6101"] * 100, [], monkeypatch).transmit(bytes.fromhex("00A4040000"))
