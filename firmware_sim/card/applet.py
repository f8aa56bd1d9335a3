"""The EMV payment applet: one method per instruction, state kept per power-up.

``EmvApplet.process(command) -> (data, sw)`` is the whole interface. It knows nothing about
T=0 procedure bytes, transports or faults (see :mod:`firmware_sim.card.card`).
Persistent counters (ATC, PIN try counter) live in :class:`CardMemory` and survive resets.

What the applet checks, as a real card does (EMV Book 3 6.5, Book 2 8):

* GENERATE AC: refused (6985) before GPO, after the second GENERATE AC, or when the ATC is exhausted (it
  never wraps, so an ATC is never used twice, across power-ups too); data of another length than the
  CDOL asks for is refused (6700). The cryptogram method is in :mod:`firmware_sim.card.crypto`.
* Issuer authentication (AIP byte 1 bit 3, 0x04): the ARPC (method 1) arrives in tag 91 inside the CDOL2
  data (profiles whose 8D lists 91) or in EXTERNAL AUTHENTICATE ``00 82`` (Book 3 6.5.4; 6300 when it
  fails). At the second GENERATE AC a failed ARPC makes the card answer AAC when the profile's
  ``issuer_auth_failure`` is ``decline``; no issuer authentication at all (91 absent or all zeros) is
  tolerated unless ``issuer_auth_missing`` is ``decline``; an ARC in 91 that is not an approval
  (00/10/11) also gives an AAC, and so does a TC request whose 8A is not an approval (Y3/Z3 "unable to go
  online" excepted). Both outcomes are kept in the CVR (byte 3: 0x80 issuer authentication
  failed, 0x40 not performed after an online authorisation).
* Issuer scripts (Book 3 10.10, Book 2 9): commands with CLA 84 (or 04) after the first GENERATE AC of the
  power-up: PIN UNBLOCK ``84 24 00 00``, PUT DATA ``84 DA``, UPDATE RECORD ``84 DC``, APPLICATION BLOCK
  ``84 1E`` / UNBLOCK ``84 18``. The last 8 data bytes are the MAC (see ``crypto.script_mac``); no MAC
  -> 6987, a wrong MAC -> 6988 (nothing executed). Results: CVR byte 4 (high nibble: script commands
  processed, 0x08: a script command failed).
* Offline PIN VERIFY (plaintext, format 2 block): 63Cx with x tries left, 6983 once blocked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.card import crypto, profiles, tlv
from firmware_sim.card.apdu import (
    SW_AUTH_BLOCKED,
    SW_AUTH_FAILED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_DATA_NOT_FOUND,
    SW_FILE_NOT_FOUND,
    SW_INS_NOT_SUPPORTED,
    SW_OK,
    SW_RECORD_NOT_FOUND,
    SW_SM_INCORRECT,
    SW_SM_MISSING,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    Command,
)

Result = tuple[bytes, int]

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
_AC_NAMES = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC"}

#: EMV Book 2 8.1.1 Table 26: the terminal data the cryptogram covers (taken from the CDOL data).
AC_TERMINAL_DATA = (("9F02", 6), ("9F03", 6), ("9F1A", 2), ("95", 5), ("5F2A", 2), ("9A", 3), ("9C", 1),
                    ("9F37", 4))
AIP_ISSUER_AUTH = 0x04  # AIP byte 1 bit 3: issuer authentication is supported (EMV Book 3 C1)
APPROVAL_ARCS = (b"00", b"10", b"11")  # authorisation response codes that approve (ISO 8583:1987)
SM_MAC_LENGTH = 8
CVR3_ISSUER_AUTH_FAILED, CVR3_ISSUER_AUTH_NOT_DONE = 0x80, 0x40
CVR4_SCRIPT_FAILED = 0x08
CVR1_SECOND_GAC_NOT_REQUESTED = 0b10  # CVR byte 1 bits 8-7 (VIS 1.5 Appendix A)


@dataclass
class CardMemory:
    """Non-volatile card state: survives power-off and reset, not a new card."""

    atc: int
    pin_tries: int
    last_online_atc: int = 0
    app_blocked: bool = False
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)  # written by UPDATE RECORD scripts
    put_data: dict[str, bytes] = field(default_factory=dict)  # written by PUT DATA scripts
    issuer_auth_failed: bool = False  # in the last online transaction
    scripts_processed: int = 0  # script commands of the last online transaction
    script_failed: bool = False


@dataclass
class Session:
    """Volatile state of one power-up."""

    selected: dict[str, Any] | None = None  # application entry of the profile
    pse_selected: bool = False
    gpo_done: bool = False
    pin_verified: bool = False
    first_ac: int | None = None
    second_ac: int | None = None
    arqc: bytes | None = None  # the first AC when it was an ARQC (issuer authentication and scripts use it)
    issuer_auth: str | None = None  # None (not performed), "ok" or "failed"
    external_auth_done: bool = False
    log: list[str] = field(default_factory=list)


class EmvApplet:
    """EMV contact applet driven by a profile (see :mod:`firmware_sim.card.profiles`)."""

    def __init__(self, profile: profiles.Profile) -> None:
        self.profile = profile
        self.memory = CardMemory(atc=int(profile["atc"]), pin_tries=int(profile["pin_tries"]))
        self.session = Session()
        self.replay_atc_next = False  # fault: the next first GENERATE AC reuses the last ATC
        self._handlers: dict[tuple[int, int], Callable[[Command], Result]] = {
            (0x00, 0xA4): self.select,
            (0x00, 0xB2): self.read_record,
            (0x80, 0xA8): self.get_processing_options,
            (0x80, 0xCA): self.get_data,
            (0x00, 0x20): self.verify,
            (0x80, 0xAE): self.generate_ac,
            (0x00, 0x82): self.external_authenticate,
        }
        for cla in (0x84, 0x04):  # issuer script commands with secure messaging
            self._handlers.update({
                (cla, 0x24): self.pin_unblock,
                (cla, 0xDA): self.put_data,
                (cla, 0xDC): self.update_record,
                (cla, 0x1E): self.application_block,
                (cla, 0x18): self.application_unblock,
            })

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
        sw_select = 0x6283 if self.memory.app_blocked else SW_OK  # selected file invalidated (Book 1 12.3.2)
        fci = tlv.tlv("6F", tlv.tlv("84", app["aid"]) + tlv.tlv("A5", tlv.build([
            ("50", app["label"].encode("ascii")),
            ("87", bytes([app["priority"]])),
            ("9F38", profiles.dol_bytes(self.profile["pdol"])),
            ("5F2D", self.profile["language"].encode("ascii")),
            ("BF0C", tlv.tlv("9F4D", "0B0A")),
        ])))
        return fci, sw_select

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
        record = self.memory.records.get((sfi, number)) or profiles.record_bytes(self.profile, sfi, number)
        if record is None:
            return b"", SW_RECORD_NOT_FOUND
        return record, SW_OK

    # -- transaction -----------------------------------------------------------------------
    def get_processing_options(self, cmd: Command) -> Result:
        if cmd.p1 != 0 or cmd.p2 != 0:
            return b"", SW_WRONG_P1P2
        if self.session.selected is None or self.session.gpo_done or self.memory.app_blocked:
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
        values.update(self.memory.put_data)
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
        dol = self.profile["cdol1" if first else "cdol2"]
        if len(cmd.data) != tlv.dol_length(profiles.dol_bytes(dol)):
            return b"", SW_WRONG_LENGTH
        values = dol_values(dol, cmd.data)
        if first:
            if self.replay_atc_next:  # fault: the card reuses its last ATC (what an issuer must refuse)
                self.replay_atc_next = False
            elif self.memory.atc >= 0xFFFF:
                return b"", SW_CONDITIONS_NOT_SATISFIED  # ATC exhausted: the card never wraps it
            else:
                self.memory.atc += 1
            if requested == CID_AAC or self.profile["first_gac"] == "aac":
                cid = CID_AAC
            else:
                cid = CID_ARQC  # an online-only card turns a TC request into an ARQC
            s.first_ac = cid
        else:
            if requested == CID_ARQC:
                return b"", SW_CONDITIONS_NOT_SATISFIED
            cid = CID_TC if requested == CID_TC and self._second_gac_approves(values) else CID_AAC
            s.second_ac = cid
            if cid == CID_TC:
                self.memory.last_online_atc = self.memory.atc
        cvr = self._cvr()
        if first:  # the CVR just reported the last online transaction's scripts; count this one's afresh
            self.memory.scripts_processed, self.memory.script_failed = 0, False
        atc = self.memory.atc.to_bytes(2, "big")
        terminal = b"".join(values.get(tag, bytes(length)) for tag, length in AC_TERMINAL_DATA)
        ac_input = terminal + bytes.fromhex(self.profile["aip"]) + atc + cvr
        cryptogram = crypto.application_cryptogram(self._master_key, self.memory.atc, ac_input)
        if first and cid == CID_ARQC:
            s.arqc = cryptogram
        s.log.append(f"GAC{'1' if first else '2'} {_AC_NAMES[cid]} atc={self.memory.atc}")
        body = tlv.build([
            ("9F27", bytes([cid])),
            ("9F36", atc),
            ("9F26", cryptogram),
            ("9F10", bytes.fromhex(self.profile["iad_prefix"]) + cvr),
        ])
        return tlv.tlv("77", body), SW_OK

    @property
    def _master_key(self) -> bytes:
        return bytes.fromhex(self.profile["master_key"])

    @property
    def _issuer_auth_supported(self) -> bool:
        return bool(bytes.fromhex(self.profile["aip"])[0] & AIP_ISSUER_AUTH)

    def _second_gac_approves(self, values: dict[str, bytes]) -> bool:
        """The card's verdict on a TC request at the second GENERATE AC (card action analysis)."""
        s = self.session
        arc = values.get("8A", b"")
        online = s.first_ac == CID_ARQC and arc not in (b"Y3", b"Z3")  # Y3/Z3: unable to go online
        issuer_data = values.get("91")
        if self._issuer_auth_supported and online and issuer_data and any(issuer_data):
            s.issuer_auth = "ok" if self._arpc_ok(issuer_data) else "failed"
            if s.issuer_auth == "ok" and issuer_data[8:10] not in APPROVAL_ARCS:
                s.log.append("GAC2 the issuer's ARC is not an approval")
                return False
        approve = self.profile["second_gac"] == "approve"
        if online and arc not in APPROVAL_ARCS:
            s.log.append(f"GAC2 TC asked for, but the authorisation response code 8A is {arc!r}")
            return False
        if self._issuer_auth_supported and online:
            self.memory.issuer_auth_failed = s.issuer_auth == "failed"
            if s.issuer_auth == "failed" and self.profile["issuer_auth_failure"] == "decline":
                s.log.append("GAC2 issuer authentication failed")
                approve = False
            if s.issuer_auth is None and self.profile["issuer_auth_missing"] == "decline":
                s.log.append("GAC2 issuer authentication not performed")
                approve = False
        return approve

    def _arpc_ok(self, issuer_data: bytes) -> bool:
        """ARPC method 1 check of issuer authentication data (ARPC 8 || ARC 2)."""
        if self.session.arqc is None or len(issuer_data) < 10:
            return False
        expected = crypto.arpc_method1(self._master_key, self.memory.atc, self.session.arqc, issuer_data[8:10])
        return expected == issuer_data[:8]

    def external_authenticate(self, cmd: Command) -> Result:
        """EXTERNAL AUTHENTICATE (EMV Book 3 6.5.4): the issuer authentication data of tag 91 (8-16 bytes)."""
        if cmd.p1 != 0 or cmd.p2 != 0:
            return b"", SW_WRONG_P1P2
        s = self.session
        if (not self._issuer_auth_supported or s.first_ac != CID_ARQC or s.second_ac is not None
                or s.external_auth_done):
            return b"", SW_CONDITIONS_NOT_SATISFIED
        if not 8 <= len(cmd.data) <= 16:
            return b"", SW_WRONG_LENGTH
        s.external_auth_done = True
        s.issuer_auth = "ok" if self._arpc_ok(cmd.data) else "failed"
        s.log.append(f"EXTERNAL AUTHENTICATE {s.issuer_auth}")
        return b"", SW_OK if s.issuer_auth == "ok" else SW_AUTH_FAILED

    # -- issuer scripts --------------------------------------------------------------------
    def _script_command(self, cmd: Command) -> bytes | int:
        """The command data without its MAC once the MAC verifies, else the status word to answer."""
        s = self.session
        if s.arqc is None:  # secure messaging keys come from this power-up's ARQC
            return SW_CONDITIONS_NOT_SATISFIED
        self.memory.scripts_processed += 1
        if len(cmd.data) < SM_MAC_LENGTH:
            self.memory.script_failed = True
            return SW_SM_MISSING
        data, mac = cmd.data[:-SM_MAC_LENGTH], cmd.data[-SM_MAC_LENGTH:]
        header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)])
        if crypto.script_mac(self._master_key, s.arqc, header, self.memory.atc, data) != mac:
            self.memory.script_failed = True
            s.log.append(f"SCRIPT {cmd.ins:02X} MAC wrong")
            return SW_SM_INCORRECT
        s.log.append(f"SCRIPT {cmd.ins:02X} ok")
        return data

    def pin_unblock(self, cmd: Command) -> Result:
        """PIN CHANGE/UNBLOCK (Book 3 6.5.10), P2 = 00: unblock only (resets the PIN try counter)."""
        if cmd.p1 != 0 or cmd.p2 != 0:
            return b"", SW_WRONG_P1P2
        data = self._script_command(cmd)
        if isinstance(data, int):
            return b"", data
        self.memory.pin_tries = int(self.profile["pin_tries"])
        return b"", SW_OK

    def put_data(self, cmd: Command) -> Result:
        """PUT DATA of the data object P1P2 (e.g. 9F58/9F59 offline limits), kept across power-ups."""
        data = self._script_command(cmd)
        if isinstance(data, int):
            return b"", data
        self.memory.put_data[f"{cmd.p1:02X}{cmd.p2:02X}"] = data
        return b"", SW_OK

    def update_record(self, cmd: Command) -> Result:
        """UPDATE RECORD (P1 record, P2 = SFI << 3 | 4) with a 70 template; the record must exist."""
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            return b"", SW_WRONG_P1P2
        sfi, number = cmd.p2 >> 3, cmd.p1
        if profiles.record_bytes(self.profile, sfi, number) is None:
            return b"", SW_RECORD_NOT_FOUND
        data = self._script_command(cmd)
        if isinstance(data, int):
            return b"", data
        if not data or data[0] != 0x70:
            return b"", SW_WRONG_DATA
        self.memory.records[(sfi, number)] = data
        return b"", SW_OK

    def application_block(self, cmd: Command) -> Result:
        """APPLICATION BLOCK (Book 3 6.5.1): later selections answer 6283, GPO 6985."""
        data = self._script_command(cmd)
        if isinstance(data, int):
            return b"", data
        self.memory.app_blocked = True
        return b"", SW_OK

    def application_unblock(self, cmd: Command) -> Result:
        """APPLICATION UNBLOCK (Book 3 6.5.2)."""
        data = self._script_command(cmd)
        if isinstance(data, int):
            return b"", data
        self.memory.app_blocked = False
        return b"", SW_OK

    def _cvr(self) -> bytes:
        """Card verification results, laid out as the Visa CVR after its length byte (VIS 1.5 Appendix A):
        byte 1 bits 8-7 the second GENERATE AC's answer (00 AAC, 01 TC, 10 not requested), bits 6-5 the
        first's (00 AAC, 01 TC, 10 ARQC) — so an issuer reading 9F10 tells the two answers apart."""
        s = self.session
        first = 0 if s.first_ac is None else {CID_AAC: 0, CID_TC: 1, CID_ARQC: 2}[s.first_ac]
        second = CVR1_SECOND_GAC_NOT_REQUESTED if s.second_ac is None else {CID_AAC: 0, CID_TC: 1}[s.second_ac]
        byte1 = (second << 6) | (first << 4)
        byte2 = 0x04 if s.pin_verified else 0x00
        byte3 = 0x08 if self.memory.pin_tries == 0 else 0x00
        if s.second_ac is not None and self._issuer_auth_supported and s.first_ac == CID_ARQC:
            if s.issuer_auth == "failed":
                byte3 |= CVR3_ISSUER_AUTH_FAILED
            elif s.issuer_auth is None:
                byte3 |= CVR3_ISSUER_AUTH_NOT_DONE
        byte4 = (min(self.memory.scripts_processed, 15) << 4) | (
            CVR4_SCRIPT_FAILED if self.memory.script_failed else 0)
        return bytes([byte1, byte2, byte3, byte4])


def dol_values(dol: list[list[Any]], data: bytes) -> dict[str, bytes]:
    """The terminal's value of each DOL entry, cut from the concatenated DOL data."""
    out: dict[str, bytes] = {}
    pos = 0
    for tag, length in dol:
        out[tag] = data[pos : pos + int(length)]
        pos += int(length)
    return out


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
