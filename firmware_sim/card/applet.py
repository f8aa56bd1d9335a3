"""The EMV payment applet: one method per instruction, state kept per power-up.

``EmvApplet.process(command) -> (data, sw)`` is the whole interface. It knows nothing about
T=0 procedure bytes, transports or faults (see :mod:`firmware_sim.card.card`).
Persistent counters (ATC, PIN try counter) live in :class:`CardMemory` and survive resets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.card import crypto, profiles, tlv
from firmware_sim.card.apdu import (
    SW_AUTH_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_DATA_NOT_FOUND,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Command,
)

Result = tuple[bytes, int]

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
_AC_NAMES = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC"}


@dataclass
class CardMemory:
    """Non-volatile card state: survives power-off and reset, not a new card."""

    atc: int
    pin_tries: int
    last_online_atc: int = 0


@dataclass
class Session:
    """Volatile state of one power-up."""

    selected: dict[str, Any] | None = None  # application entry of the profile
    pse_selected: bool = False
    gpo_done: bool = False
    pin_verified: bool = False
    first_ac: int | None = None
    second_ac: int | None = None
    log: list[str] = field(default_factory=list)


class EmvApplet:
    """EMV contact applet driven by a profile (see :mod:`firmware_sim.card.profiles`)."""

    def __init__(self, profile: profiles.Profile) -> None:
        self.profile = profile
        self.memory = CardMemory(atc=int(profile["atc"]), pin_tries=int(profile["pin_tries"]))
        self.session = Session()
        self._handlers: dict[tuple[int, int], Callable[[Command], Result]] = {
            (0x00, 0xA4): self.select,
            (0x00, 0xB2): self.read_record,
            (0x80, 0xA8): self.get_processing_options,
            (0x80, 0xCA): self.get_data,
            (0x00, 0x20): self.verify,
            (0x80, 0xAE): self.generate_ac,
        }

    def reset(self) -> None:
        """Power-up or warm reset: volatile state is lost, counters are kept."""
        self.session = Session()

    def process(self, cmd: Command) -> Result:
        handler = self._handlers.get((cmd.cla, cmd.ins))
        if handler is None:
            if any(ins == cmd.ins for _, ins in self._handlers):
                return b"", SW_CLA_NOT_SUPPORTED
            return b"", SW_INS_NOT_SUPPORTED
        return handler(cmd)

    # -- selection -------------------------------------------------------------------------
    def select(self, cmd: Command) -> Result:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x02):
            return b"", SW_WRONG_P1P2
        name = cmd.data
        self.session = Session()
        if name == profiles.PSE_NAME:
            self.session.pse_selected = True
            fci = tlv.tlv("6F", tlv.tlv("84", name) + tlv.tlv("A5", tlv.build([
                ("88", bytes([profiles.PSE_SFI])),
                ("5F2D", self.profile["language"].encode("ascii")),
            ])))
            return fci, SW_OK
        matches = [app for app in self.profile["applications"]
                   if bytes.fromhex(app["aid"]).startswith(name) and name]
        if not matches:
            return b"", SW_FILE_NOT_FOUND
        app = matches[0]
        if cmd.p2 == 0x02:  # next occurrence of a partial name
            if len(matches) < 2:
                return b"", SW_FILE_NOT_FOUND
            app = matches[1]
        self.session.selected = app
        fci = tlv.tlv("6F", tlv.tlv("84", app["aid"]) + tlv.tlv("A5", tlv.build([
            ("50", app["label"].encode("ascii")),
            ("87", bytes([app["priority"]])),
            ("9F38", profiles.dol_bytes(self.profile["pdol"])),
            ("5F2D", self.profile["language"].encode("ascii")),
            ("BF0C", tlv.tlv("9F4D", "0B0A")),
        ])))
        return fci, SW_OK

    def read_record(self, cmd: Command) -> Result:
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            return b"", SW_WRONG_P1P2
        sfi, number = cmd.p2 >> 3, cmd.p1
        if self.session.pse_selected:
            if sfi != profiles.PSE_SFI:
                return b"", SW_FILE_NOT_FOUND
            apps = self.profile["applications"]
            if number > len(apps):
                return b"", SW_RECORD_NOT_FOUND
            app = apps[number - 1]
            entry = tlv.tlv("61", tlv.build([
                ("4F", app["aid"]), ("50", app["label"].encode("ascii")), ("87", bytes([app["priority"]])),
            ]))
            return tlv.tlv("70", entry), SW_OK
        if self.session.selected is None:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        if all(rec["sfi"] != sfi for rec in self.profile["records"]):
            return b"", SW_FILE_NOT_FOUND
        record = profiles.record_bytes(self.profile, sfi, number)
        if record is None:
            return b"", SW_RECORD_NOT_FOUND
        return record, SW_OK

    # -- transaction -----------------------------------------------------------------------
    def get_processing_options(self, cmd: Command) -> Result:
        if cmd.p1 != 0 or cmd.p2 != 0:
            return b"", SW_WRONG_P1P2
        if self.session.selected is None or self.session.gpo_done:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        try:
            items = list(tlv.iter_tlv(cmd.data))
        except tlv.TlvFormatError:
            return b"", SW_WRONG_DATA
        if len(items) != 1 or items[0][0] != "83":
            return b"", SW_WRONG_DATA
        if len(items[0][1]) != tlv.dol_length(profiles.dol_bytes(self.profile["pdol"])):
            return b"", SW_WRONG_LENGTH
        self.session.gpo_done = True
        self.session.first_ac = self.session.second_ac = None
        body = tlv.build([("82", self.profile["aip"]), ("94", profiles.afl(self.profile))])
        return tlv.tlv("77", body), SW_OK

    def get_data(self, cmd: Command) -> Result:
        tag = f"{cmd.p1:02X}{cmd.p2:02X}"
        values = {
            "9F36": self.memory.atc.to_bytes(2, "big"),
            "9F17": bytes([self.memory.pin_tries]),
            "9F13": self.memory.last_online_atc.to_bytes(2, "big"),
            "9F4F": bytes.fromhex(self.profile["log_format"]),
        }
        if tag not in values:
            return b"", SW_DATA_NOT_FOUND
        return tlv.tlv(tag, values[tag]), SW_OK

    def verify(self, cmd: Command) -> Result:
        if cmd.p1 != 0x00 or cmd.p2 != 0x80:
            return b"", SW_WRONG_P1P2
        if self.session.selected is None:
            return b"", SW_CONDITIONS_NOT_SATISFIED
        if self.memory.pin_tries == 0:
            return b"", SW_AUTH_BLOCKED
        if not cmd.data:  # tries left query
            return b"", 0x63C0 | self.memory.pin_tries
        pin = _plain_pin(cmd.data)
        if pin is None:
            return b"", SW_WRONG_DATA
        if pin == self.profile["pin"]:
            self.memory.pin_tries = int(self.profile["pin_tries"])
            self.session.pin_verified = True
            return b"", SW_OK
        self.memory.pin_tries -= 1
        return b"", 0x63C0 | self.memory.pin_tries

    def generate_ac(self, cmd: Command) -> Result:
        requested = cmd.p1 & 0xC0
        if cmd.p1 & 0x2F or requested == 0xC0 or cmd.p2 != 0:
            return b"", SW_WRONG_P1P2
        s = self.session
        if not s.gpo_done or s.second_ac is not None or s.first_ac in (CID_AAC, CID_TC):
            return b"", SW_CONDITIONS_NOT_SATISFIED
        first = s.first_ac is None
        dol = profiles.dol_bytes(self.profile["cdol1" if first else "cdol2"])
        if len(cmd.data) != tlv.dol_length(dol):
            return b"", SW_WRONG_LENGTH
        if first:
            self.memory.atc = (self.memory.atc + 1) & 0xFFFF
            if requested == CID_AAC or self.profile["first_gac"] == "aac":
                cid = CID_AAC
            else:
                cid = CID_ARQC  # an online-only card turns a TC request into an ARQC
            s.first_ac = cid
        else:
            if requested == CID_ARQC:
                return b"", SW_CONDITIONS_NOT_SATISFIED
            approve = requested == CID_TC and self.profile["second_gac"] == "approve"
            cid = CID_TC if approve else CID_AAC
            s.second_ac = cid
            if cid == CID_TC:
                self.memory.last_online_atc = self.memory.atc
        cvr = self._cvr()
        atc = self.memory.atc.to_bytes(2, "big")
        ac_input = cmd.data + bytes.fromhex(self.profile["aip"]) + atc + cvr
        cryptogram = crypto.application_cryptogram(bytes.fromhex(self.profile["master_key"]),
                                                   self.memory.atc, ac_input)
        s.log.append(f"GAC{'1' if first else '2'} {_AC_NAMES[cid]} atc={self.memory.atc}")
        body = tlv.build([
            ("9F27", bytes([cid])),
            ("9F36", atc),
            ("9F26", cryptogram),
            ("9F10", bytes.fromhex(self.profile["iad_prefix"]) + cvr),
        ])
        return tlv.tlv("77", body), SW_OK

    def _cvr(self) -> bytes:
        s = self.session
        first = 0 if s.first_ac is None else {CID_AAC: 0, CID_TC: 1, CID_ARQC: 2}[s.first_ac]
        second = 0 if s.second_ac is None else {CID_AAC: 0, CID_TC: 1}[s.second_ac]
        byte1 = (second << 6) | (first << 4)
        byte2 = 0x04 if s.pin_verified else 0x00
        byte3 = 0x08 if self.memory.pin_tries == 0 else 0x00
        return bytes([byte1, byte2, byte3, 0x00])


def _plain_pin(block: bytes) -> str | None:
    """Digits of an ISO 9564 format-2 plaintext PIN block (2N PPPP..F), or None if malformed."""
    if len(block) != 8:
        return None
    text = block.hex().upper()
    if text[0] != "2":
        return None
    n = int(text[1], 16)
    digits, filler = text[2 : 2 + n], text[2 + n :]
    if not 4 <= n <= 12 or not digits.isdigit() or set(filler) - {"F"}:
        return None
    return digits
