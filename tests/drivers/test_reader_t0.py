"""T=0 procedure handling in Reader.transmit (61xx -> GET RESPONSE, 6Cxx -> resend with Le).

A scripted transport stands in for one class under test (the base Reader); the real transports are
exercised end to end in test_pcsc_e2e.py and test_twin_e2e.py.
"""

from __future__ import annotations

import pytest

from posguard.drivers.errors import TransportError
from posguard.drivers.reader import CardEvent, Reader, Response, apdu_case


class Scripted(Reader):
    name = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers = [bytes.fromhex(a) for a in answers]
        self.sent: list[str] = []

    def transmit_raw(self, apdu: bytes) -> bytes:
        self.sent.append(apdu.hex().upper())
        return self.answers.pop(0)

    def card_present(self) -> bool:
        return True

    def wait_for_event(self, timeout: float) -> CardEvent | None:
        return None

    def wait_for_card(self, timeout: float) -> None:
        pass

    def wait_for_removal(self, timeout: float) -> None:
        pass

    def power_on(self) -> bytes:
        return b""

    def power_off(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_plain_answer() -> None:
    r = Scripted(["6F009000"])
    assert r.transmit(bytes.fromhex("00A4040000")) == Response(b"\x6f\x00", 0x9000)


def test_61xx_chains_get_response_and_concatenates() -> None:
    r = Scripted(["6104", "AABB6102", "CCDD9000"])
    resp = r.transmit(bytes.fromhex("00A404000107" "00"))
    assert resp.data.hex().upper() == "AABBCCDD" and resp.ok
    assert r.sent[1:] == ["00C0000004", "00C0000002"]


def test_6cxx_resends_with_corrected_le() -> None:
    r = Scripted(["6C1A", "11" * 0x1A + "9000"])
    resp = r.transmit(bytes.fromhex("00B2010C00"))
    assert r.sent == ["00B2010C00", "00B2010C1A"]
    assert len(resp.data) == 0x1A


def test_6cxx_on_case1_appends_le() -> None:
    r = Scripted(["6C02", "AAAA9000"])
    r.transmit(bytes.fromhex("80CA9F36"))
    assert r.sent[1] == "80CA9F3602"


def test_error_status_after_get_response_is_returned() -> None:
    r = Scripted(["6102", "6985"])
    resp = r.transmit(bytes.fromhex("80AE80000100" "00"))
    assert resp.sw == 0x6985 and resp.data == b""


def test_endless_61xx_is_a_transport_error_not_a_hang() -> None:
    r = Scripted(["6101"] * 100)
    with pytest.raises(TransportError, match="61xx"):
        r.transmit(bytes.fromhex("00A4040000"))


def test_response_without_status_word() -> None:
    with pytest.raises(TransportError, match="no status word"):
        Scripted(["90"]).transmit(bytes.fromhex("00A4040000"))


def test_response_repr_hides_data() -> None:
    text = repr(Response(b"4761739001010119", 0x9000))
    assert "4761" not in text and "9000" in text


@pytest.mark.parametrize(("apdu", "case"), [("00A40400", 1), ("00B2010C00", 2), ("00A4040002AABB", 3),
                                             ("00A4040002AABB00", 4)])
def test_apdu_case(apdu: str, case: int) -> None:
    assert apdu_case(bytes.fromhex(apdu))[0] == case


def test_apdu_case_rejects_bad_lc() -> None:
    with pytest.raises(ValueError, match="Lc"):
        apdu_case(bytes.fromhex("00A4040005AABB"))
