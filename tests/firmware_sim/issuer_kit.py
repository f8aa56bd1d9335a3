"""A card from the simulator run to its ARQC, and the field 55 a terminal would send for it (tests' own bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_sim.card import Card
from tests.firmware_sim import emv

PANS = {"visa_credit_sig": "4761739001010119", "unionpay_debit_pin": "6250947000000014",
        "mastercard_nocvm": "5413330089010434"}
ICC_TAGS = ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "9F03")


def tlv(tag: str, value: bytes) -> bytes:
    return bytes.fromhex(tag) + bytes([len(value)]) + value


def find_91(field55_hex: str) -> bytes | None:
    return emv.tlv_find(bytes.fromhex(field55_hex), "91")


@dataclass
class ChipRead:
    """One card session up to the ARQC; ``field55()`` is what goes into the request."""

    card: Card
    amount: int
    un: int = 0x12345678
    found: dict[str, bytes] = field(default_factory=dict)
    values: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def at(cls, card: Card, amount: int, un: int = 0x12345678) -> ChipRead:
        read = cls(card, amount, un)
        card.power_on()
        read.found = emv.read_application(read.send)
        read.values = emv.terminal_values(amount, un)
        read.values.update(emv.generate_ac(read.send, read.found["8C"], 0x80, amount, un))
        read.values["82"] = read.found["82"]
        return read

    def send(self, raw: bytes) -> tuple[bytes, int]:
        response = self.card.transmit(raw)
        return response[:-2], int.from_bytes(response[-2:], "big")

    def field55(self, **replace: bytes) -> str:
        values = {**self.values, **replace}
        return b"".join(tlv(tag, values[tag]) for tag in ICC_TAGS).hex().upper()

    def second_gac(self, issuer_data: bytes | None, arc: str = "00", p1: int = 0x40) -> bytes:
        """The CID of the card's answer to the second GENERATE AC (91 in CDOL2 or EXTERNAL AUTHENTICATE)."""
        values = dict(self.values, **{"8A": arc.encode("ascii")})
        if issuer_data is not None:
            if "91" in [tag for tag, _ in self.card.profile["cdol2"]]:
                values["91"] = issuer_data
            else:
                emv.exchange(self.send, emv.apdu(0x00, 0x82, 0x00, 0x00, issuer_data, le=None))
        data = emv.dol_data(self.found["8D"], values)
        resp, sw = emv.exchange(self.send, emv.apdu(0x80, 0xAE, p1, 0x00, data))
        assert sw == 0x9000, f"GENERATE AC 2: {sw:04X}"
        return emv.tlv_find(resp, "9F27") or b""

    def script_sw(self, field55_hex: str, template: str) -> list[int]:
        """Send each 86 command of the answer's script template 71/72 to the card; their status words."""
        script = emv.tlv_find(bytes.fromhex(field55_hex), template)
        assert script is not None, f"no {template} template in the answer"
        sws, pos = [], 0
        while pos < len(script):
            tag = script[pos : pos + (2 if script[pos] & 0x1F == 0x1F else 1)]
            pos += len(tag)
            length = script[pos]
            value = script[pos + 1 : pos + 1 + length]
            pos += 1 + length
            if tag == b"\x86":
                sws.append(emv.exchange(self.send, value)[1])
        return sws
