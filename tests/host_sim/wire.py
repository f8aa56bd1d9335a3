"""A tiny pyiso8583-based terminal for driving the simulator in tests (independent of posguard)."""

from __future__ import annotations

import socket
from typing import Any

import iso8583
import psec.pinblock

from firmware_sim.host import mac as sim_mac
from firmware_sim.host.dialects import BINARY_IS_RAW, HEADER_LEN, get_spec
from firmware_sim.host.framing import Deframer, frame
from firmware_sim.host.keys import TEST_TMK, kcv4, tdes_ecb

CUP_HEADER = "6000030000" + "603100000000"  # TPDU 60 0003 0000 + header 60 31 00 00 00 00

PAN = "6222021234567890123"
OTHER_PAN = "6222029876543210987"


class WireClient:
    """Connects to the simulator, sends pyiso8583 docs, reads decoded responses (real short timeouts)."""

    def __init__(self, address: tuple[str, int], dialect: str, framing: str = "binary2",
                 *, mac_algorithm: str | None = None, mac_key: bytes | None = None) -> None:
        self.dialect = dialect
        self.framing = framing
        self.spec = get_spec(dialect)
        self.sock = socket.create_connection(address, timeout=2.0)
        self.deframer = Deframer(framing)
        self.pending: list[bytes] = []
        self.mac_algorithm = mac_algorithm
        self.mac_key = mac_key
        self.mac_only: frozenset[str] | None = None  # after sign_on(): MAC only the MTIs that need one

    def sign_on(self, *, tid: str = "TERM0001", tmk: str = TEST_TMK, stan: int = 999_999,
                code: str = "003") -> dict[str, Any]:
        """An 0800 sign-on (CUP 60.3 = ``code``, ISO 70 = 001); the MAC key of the answer, checked against its
        KCV under ``tmk``, is used from then on for the messages that need a MAC."""
        cup = self.dialect == "cup"
        doc = {"t": "0800", "11": f"{stan:06d}", "41": tid, "42": "123456789012345"}
        doc.update({"60": f"00000001{code}", "63": "001"} if cup else {"7": "1120090000", "70": "001"})
        resp = self.exchange(doc)
        if resp["39"] != "00":
            return resp
        block = bytes.fromhex(resp["62" if cup else "48"])
        size = 8 if len(block) == 24 else 16
        key = bytes.fromhex(tmk)
        mac_part = block[size + 4 : 2 * size + 8]
        single = size == 16 and mac_part[8:16] == bytes(8)  # CUP 003: a single-length MAC key, then 8 zeros
        mac_key = tdes_ecb(key, mac_part[:8] if single else mac_part[:size], decrypt=True)
        assert kcv4(mac_key) == mac_part[size:], "the MAC key does not match its check value"
        self.mac_algorithm, self.mac_key = sim_mac.DIALECT_ALGORITHM[self.dialect], mac_key
        self.mac_only = sim_mac.MACED_MTIS
        pin_key = tdes_ecb(key, block[:size], decrypt=True)
        assert kcv4(pin_key) == block[size : size + 4], "the PIN key does not match its check value"
        self.pin_key = pin_key
        return resp

    pin_key: bytes | None = None

    def pin_block(self, pan: str, pin: str) -> str:
        """Field 52 for ``pin`` as an encrypting PIN pad makes it: ISO 9564 format 0 (psec) under the PIN key of
        the last sign-on (emv-keys.md §C). What a terminal owes when the card's CVM is online PIN."""
        assert self.pin_key is not None, "sign on first: the PIN key comes with the sign-on"
        return tdes_ecb(self.pin_key, psec.pinblock.encode_pinblock_iso_0(pin, pan)).hex().upper()

    def close(self) -> None:
        self.sock.close()

    def encode(self, doc: dict[str, str]) -> bytes:
        doc = dict(doc)
        if self.dialect == "cup":
            doc.setdefault("h", CUP_HEADER)
        if self.mac_algorithm and self.mac_key and (self.mac_only is None or doc["t"] in self.mac_only):
            f = "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"
            doc[f] = "0" * 16
            raw, _ = iso8583.encode(dict(doc), self.spec)
            wire = 8 if BINARY_IS_RAW[self.dialect] else 16
            data = bytes(raw)[HEADER_LEN[self.dialect] : len(raw) - wire]
            doc[f] = sim_mac.compute(self.mac_algorithm, self.mac_key, data).hex().upper()
        raw, _ = iso8583.encode(doc, self.spec)
        return bytes(raw)

    def send(self, doc: dict[str, str]) -> None:
        self.sock.sendall(frame(self.framing, self.encode(doc)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_raw(self, timeout: float = 2.0) -> bytes | None:
        """The next whole payload, or None on timeout/EOF."""
        self.sock.settimeout(timeout)
        while not self.pending:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            self.pending.extend(self.deframer.feed(data))
        return self.pending.pop(0)

    def recv(self, timeout: float = 2.0) -> dict[str, Any] | None:
        raw = self.recv_raw(timeout)
        if raw is None:
            return None
        doc, _ = iso8583.decode(raw, self.spec)
        return doc

    def exchange(self, doc: dict[str, str], timeout: float = 2.0) -> dict[str, Any]:
        self.send(doc)
        resp = self.recv(timeout)
        assert resp is not None, f"no response to {doc['t']}"
        return resp


#: CUP field 22: chip (05), PIN entry capability digit — 2 = no PIN in this message (emv-keys.md §C). These raw
#: requests carry no field 52, and the strict host refuses a 22.3 = 1 without one (RC 55), as an acquirer does.
CUP_CHIP_NO_PIN = "052"


def cup_sale(stan: int, amount: int, *, pan: str = PAN, tid: str = "TERM0001", batch: str = "000001",
             mti: str = "0200") -> dict[str, str]:
    return {
        "t": mti, "2": pan, "3": "000000", "4": f"{amount:012d}", "11": f"{stan:06d}", "22": CUP_CHIP_NO_PIN,
        "25": "00", "41": tid, "42": "123456789012345", "49": "156", "60": f"22{batch}000",
    }


def cup_void(stan: int, amount: int, rrn: str, auth: str, orig_stan: int, *, pan: str = PAN,
             batch: str = "000001") -> dict[str, str]:
    return {
        "t": "0200", "2": pan, "3": "200000", "4": f"{amount:012d}", "11": f"{stan:06d}", "22": CUP_CHIP_NO_PIN,
        "25": "00", "37": rrn, "38": auth, "41": "TERM0001", "42": "123456789012345", "49": "156",
        "60": f"23{batch}000", "61": f"{batch}{orig_stan:06d}",
    }


def cup_refund(stan: int, amount: int, rrn: str, orig_stan: int, *, pan: str = PAN,
               batch: str = "000001") -> dict[str, str]:
    return {
        "t": "0220", "2": pan, "3": "200000", "4": f"{amount:012d}", "11": f"{stan:06d}", "22": CUP_CHIP_NO_PIN,
        "25": "00", "37": rrn, "41": "TERM0001", "42": "123456789012345", "49": "156",
        "60": f"25{batch}000", "61": f"{batch}{orig_stan:06d}1123",
    }


def cup_reversal(original: dict[str, str], reason: str = "98") -> dict[str, str]:
    rev = {k: v for k, v in original.items() if k not in ("26", "35", "36", "52", "53", "64", "h")}
    rev["t"] = "0400"
    rev["39"] = reason
    return rev


def iso_sale(stan: int, amount: int, *, pan: str = PAN, proc: str = "000000", tid: str = "TERM0001",
             mti: str = "0200") -> dict[str, str]:
    return {
        "t": mti, "2": pan, "3": proc, "4": f"{amount:012d}", "11": f"{stan:06d}", "22": "051",
        "25": "00", "41": tid, "42": "123456789012345", "49": "978",
    }


def iso_reversal(original: dict[str, str], *, mti: str = "0400") -> dict[str, str]:
    rev = {k: v for k, v in original.items() if k not in ("26", "35", "36", "52", "53", "64")}
    rev["t"] = mti
    rev["90"] = original["t"] + original["11"] + "1123101010" + "00000000001" + "00000000000"
    return rev


class ManualScheduler:
    """A scheduler whose time moves only when the test says so (delayed responses fire on advance)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start
        self.timers: list[tuple[float, Any]] = []

    def now(self) -> float:
        return self.t

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((self.t + delay, callback))

    def advance(self, seconds: float) -> None:
        self.t += seconds
        due = [cb for when, cb in self.timers if when <= self.t]
        self.timers = [(w, cb) for w, cb in self.timers if w > self.t]
        for cb in due:
            cb()
