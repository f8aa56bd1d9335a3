"""Sanitising capture records as they are written.

Every PAN seen is replaced, consistently within one capture, by a *test PAN* that keeps the BIN (first six
digits) and the length and passes Luhn; the replacement is applied to every spelling of the PAN a record can
carry: digits (field 2, track 2, hex of BCD in field 55 / APDU responses) and hex of ASCII digits (field 2 and
35 of the ASCII dialects). The cardholder's name (5F20, 9F0B) is blanked wherever chip data carries it. PIN blocks, CVV/CVC and keys are removed before a record is written (which ISO 8583
fields those are, the dialect declares: :func:`posguard.iso8583.redaction.capture_drops`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from posguard.sensitive import luhn_check_digit

__all__ = ["Sanitiser", "substitute_pan", "blank_names", "blank_verify", "sanitise_apdu", "NAME_TAGS"]

_PAN_RE = re.compile(r"(?<![0-9])([2-6][0-9]{12,18})(?![0-9])")


#: EMV tags that hold the cardholder's name, with the lengths EMV allows: 5F20 Cardholder Name (2-26),
#: 9F0B Cardholder Name Extended (27-45)
NAME_TAGS: dict[bytes, tuple[int, int]] = {b"\x5f\x20": (2, 26), b"\x9f\x0b": (27, 45)}


def blank_names(data: bytes) -> bytes:
    """``data`` with the value of every cardholder-name tag (:data:`NAME_TAGS`) replaced by spaces.

    A scan, not a parse (the name may sit in a READ RECORD template, field 55 or a reader frame): a tag followed
    by a length in its range and that many printable ASCII bytes. Lengths never change, so TLV structures and
    frame headers stay valid.

    >>> blank_names(bytes.fromhex("5F200A") + b"LEE/WEI MS" + b"\\x9f\\x02").hex().upper()
    '5F200A202020202020202020209F02'
    """
    out = bytearray(data)
    for tag, (low, high) in NAME_TAGS.items():
        start = 0
        while (i := data.find(tag, start)) >= 0:
            start = i + 1
            n = data[i + 2] if i + 2 < len(data) else 0
            value = data[i + 3:i + 3 + n]
            if low <= n <= high and len(value) == n and all(0x20 <= b < 0x7F for b in value):
                out[i + 3:i + 3 + n] = b" " * n
    return bytes(out)


def blank_verify(command: bytes) -> bytes:
    """A VERIFY (INS 20) keeps its header and loses its data (the PIN block)."""
    if len(command) > 5 and command[1] == 0x20:
        return command[:5] + bytes(len(command) - 5)
    return command


def sanitise_apdu(command: bytes, response: bytes, sanitiser: Sanitiser) -> tuple[str, str]:
    """One APDU exchange as a capture's ``apdu`` record holds it, as hex: the PIN block of a VERIFY zeroed, the
    cardholder's name blanked, every PAN (learnt from this and earlier responses) replaced by its test PAN."""
    sanitiser.learn_from_response(response)
    c = sanitiser.text(blank_verify(command).hex().upper())
    r = sanitiser.text(blank_names(response).hex().upper())
    return c, r


def substitute_pan(pan: str, salt: bytes) -> str:
    """A Luhn-valid PAN with ``pan``'s BIN and length, derived from ``pan`` and ``salt``; never ``pan`` itself."""
    body_len = len(pan) - 7  # digits between the BIN and the check digit
    for counter in range(100):
        digest = hmac.new(salt, f"{pan}:{counter}".encode(), hashlib.sha256).hexdigest()
        middle = "".join(str(int(c, 16) % 10) for c in digest)[:body_len]
        partial = pan[:6] + middle
        candidate = partial + luhn_check_digit(partial)
        if candidate != pan:
            return candidate
    raise ValueError("could not derive a test PAN")  # pragma: no cover - 100 collisions in a row


class Sanitiser:
    """Remembers the PANs of one capture and rewrites text and hex consistently."""

    def __init__(self, salt: bytes | None = None) -> None:
        self._salt = salt if salt is not None else secrets.token_bytes(16)
        self._map: dict[str, str] = {}
        self._test: set[str] = set()

    @property
    def known(self) -> int:
        return len(self._map)

    def learn(self, pan: str) -> str:
        """Register a clear PAN; returns its test PAN."""
        pan = pan.strip().upper().rstrip("F")
        if not pan.isdigit() or not 12 <= len(pan) <= 19:
            raise ValueError("not a PAN")
        if pan in self._test:  # already a replacement
            return pan
        test = self._map.get(pan)
        if test is None:
            test = substitute_pan(pan, self._salt)
            self._map[pan] = test
            self._test.add(test)
        return test

    def text(self, value: str) -> str:
        """Replace every known PAN (digits, hex of BCD, hex of ASCII, any case) in ``value``."""
        out = value
        for pan, test in self._map.items():
            out = out.replace(pan, test)
            ascii_hex = pan.encode().hex()
            if ascii_hex in out.lower():
                out = re.sub(re.escape(ascii_hex), test.encode().hex().upper(), out, flags=re.IGNORECASE)
        return out

    def learn_from_response(self, data: bytes) -> None:
        """Learn the PANs a card response carries in BER-TLV tags 5A (PAN) and 57 (track 2 equivalent).

        A scan, not a parse: any ``5A``/``57`` byte followed by a plausible length and a Luhn-valid BCD PAN is
        taken (learning a false positive only replaces those digits, consistently).
        """
        from posguard.sensitive import luhn_ok

        for i in range(len(data) - 2):
            tag, length = data[i], data[i + 1]
            if tag not in (0x5A, 0x57) or not 6 <= length <= 19 or i + 2 + length > len(data):
                continue
            digits = data[i + 2:i + 2 + length].hex().upper()
            if tag == 0x57:
                digits = digits.split("D", 1)[0]
            digits = digits.rstrip("F")
            if digits.isdigit() and 12 <= len(digits) <= 19 and luhn_ok(digits) and digits not in self._test:
                self.learn(digits)

    def masked(self, masked_pan: str) -> str:
        """A masked PAN (first six, ``*``, last four: an acquirer report's ``pan_masked``) of a card this capture
        has seen, as the masked form of its test PAN; a masked PAN of a card not seen is kept (it shows no more
        than a receipt does).

        >>> s = Sanitiser(salt=b"k")
        >>> test = s.learn("4761739001010119")
        >>> s.masked("476173******0119") == test[:6] + "******" + test[-4:], s.masked("622202******0012")
        (True, '622202******0012')
        """
        head, tail, width = masked_pan[:6], masked_pan[-4:], len(masked_pan)
        for pan, test in self._map.items():
            if len(pan) == width and pan.startswith(head) and pan.endswith(tail):
                return test[:6] + "*" * (width - 10) + test[-4:]
        return masked_pan

    def scrub_unknown(self, value: str) -> str:
        """Belt and braces for free text: any Luhn-valid digit run that looks like a PAN is learnt and replaced."""
        from posguard.sensitive import luhn_ok

        for m in _PAN_RE.finditer(value):
            if luhn_ok(m.group(1)) and m.group(1) not in self._test:
                self.learn(m.group(1))
        return self.text(value)
