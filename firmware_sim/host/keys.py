"""The working keys the simulated acquirer issues at each sign-on, under the terminal's master key (TMK).

The host knows every terminal's TMK (``SimConfig.terminal_keys``: terminal id -> 32 hex digits; a terminal not
listed gets ``SimConfig.default_tmk``, the test TMK the demo and the tests inject, KCV 08D7B4FB). At each
sign-on it **generates fresh** random keys, keeps them in clear on its side, and sends them encrypted under the
TMK (TDES-ECB), each followed by its 4-byte check value (the key encrypting eight zero bytes, leftmost four:
``../shared/reference/emv-keys.md`` §D), in the order of openpos ``logon.c`` and cash2one/bank_interface
``unionpaypos.cpp``: PIN key ‖ KCV ‖ MAC key ‖ KCV [‖ track key ‖ KCV].

============  ======================================  ==========================================================
dialect       request                                 keys in the answer
============  ======================================  ==========================================================
``cup``       0800, 60.3 = 001 single-length keys      field 62 (b..512): 24 bytes (8-byte keys), 40 bytes
              (8 bytes), 003 double-length, 004        (16-byte PIN key; the MAC key single-length: 8 bytes
              double-length plus a track key          + 8 zero bytes + KCV, per openpos/cash2one) or 60 bytes
                                                      (with a 16-byte track key); the answer's 60.2 carries
                                                      the host's batch number
ISO 8583:87   0800, field 70 = 001 (sign-on)           field 48 (ans LLL, "additional data - private use"): the
                                                      same 40 bytes as hex text (80 characters); ISO 8583:1987
                                                      leaves 48 to private agreement, and the 0800/0810 of the
                                                      key exchange have no other data field we could use
                                                      (field 96 is only 8 bytes in the 1987 layout)
============  ======================================  ==========================================================

Per terminal the host keeps: signed on or not, the issued keys (clear, host side only) and when they were
issued. Keys older than ``key_life`` seconds are *stale*: the terminal must sign on again (RC 77). A sign-off
(CUP 0820 60.3 = 002, ISO 0800/70 = 002) forgets them.

Nothing here prints a key: reprs show check values only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = ["TEST_TMK", "IssuedKeys", "KeyStore", "kcv4", "tdes_ecb"]

#: The test terminal master key (the ISO 9797 / ANSI example key) that the demo and the tests inject.
TEST_TMK = "0123456789ABCDEFFEDCBA9876543210"


def tdes_ecb(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or 2-key/3-key TDES ECB over whole blocks."""
    k = key * 3 if len(key) == 8 else (key + key[:8] if len(key) == 16 else key)
    c = Cipher(TripleDES(k), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def kcv4(key: bytes) -> bytes:
    return tdes_ecb(key, bytes(8))[:4]


def _odd_parity(key: bytes) -> bytes:
    """DES keys carry odd parity in the low bit of every byte (ANSI X3.92)."""
    return bytes(b & 0xFE | (bin(b & 0xFE).count("1") + 1) % 2 for b in key)


def _fresh_key(length: int) -> bytes:
    while True:
        key = _odd_parity(secrets.token_bytes(length))
        if length == 8 or key[:8] != key[8:16]:  # a double-length key with equal halves is single DES
            return key


@dataclass(frozen=True)
class IssuedKeys:
    """What one sign-on gave a terminal: keys in clear (host side), when, and which sign-on (``serial``)."""

    tid: str
    pin_key: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    track_key: bytes | None = field(default=None, repr=False)
    issued_at: float = 0.0
    serial: int = 0

    def __repr__(self) -> str:
        return (f"IssuedKeys(tid={self.tid!r}, serial={self.serial}, pin kcv={kcv4(self.pin_key).hex().upper()}, "
                f"mac kcv={kcv4(self.mac_key).hex().upper()})")


@dataclass
class KeyStore:
    """Per terminal: the TMK, the keys of the last sign-on (None when signed off) and the host's batch number."""

    terminal_keys: dict[str, str] = field(default_factory=dict, repr=False)
    default_tmk: str | None = field(default=TEST_TMK, repr=False)
    key_life: float = 24 * 3600.0
    now: Callable[[], float] = field(default=lambda: 0.0, repr=False)
    _issued: dict[str, IssuedKeys] = field(default_factory=dict, repr=False)
    _batches: dict[str, int] = field(default_factory=dict)
    _serial: int = 0
    #: every key set ever issued (for tests: an old key must be refused after a rotation)
    history: list[IssuedKeys] = field(default_factory=list, repr=False)

    def tmk_for(self, tid: str) -> bytes | None:
        text = self.terminal_keys.get(tid, self.default_tmk)
        return bytes.fromhex(text) if text else None

    def issue(self, tid: str, *, key_length: int = 16, track: bool = False, single_mac: bool = False
              ) -> bytes | None:
        """Generate fresh keys for ``tid``, remember them, and return the key block (None: unknown terminal).

        ``single_mac`` (CUP 60.3 = 003/004): the MAC key is single-length in a 16-byte slot — its 8 encrypted
        bytes, 8 zero bytes, then its single-DES check value — as openpos ``util.c`` UTIL_Double_StoreNewKey and
        cash2one ``unionpaypos.cpp`` CheckKey read it (docs/keys-and-mac.md "Second sources")."""
        tmk = self.tmk_for(tid)
        if tmk is None:
            return None
        pin, mac = _fresh_key(key_length), _fresh_key(8 if single_mac else key_length)
        trk = _fresh_key(key_length) if track else None
        self._serial += 1
        keys = IssuedKeys(tid, pin, mac, trk, self.now(), self._serial)
        self._issued[tid] = keys
        self.history.append(keys)
        return b"".join(tdes_ecb(tmk, k) + bytes(key_length - len(k)) + kcv4(k)
                        for k in (pin, mac, trk) if k is not None)

    def adopt(self, tid: str, block: bytes) -> None:
        """A configured (fixed) key block: learn its keys by decrypting it under the TMK, as if issued now."""
        tmk = self.tmk_for(tid)
        if tmk is None or len(block) not in (24, 40, 60):
            return
        size = 8 if len(block) == 24 else 16
        slots = [block[i:i + size] for i in range(0, len(block), size + 4)]
        if size == 16 and slots[1][8:] == bytes(8):  # a single-length MAC key in its slot: 8 bytes, 8 zeros
            slots[1] = slots[1][:8]
        parts = [tdes_ecb(tmk, slot, decrypt=True) for slot in slots]
        self._serial += 1
        keys = IssuedKeys(tid, parts[0], parts[1], parts[2] if len(parts) == 3 else None, self.now(), self._serial)
        self._issued[tid] = keys
        self.history.append(keys)

    def sign_off(self, tid: str) -> None:
        self._issued.pop(tid, None)

    def current(self, tid: str | None = None) -> IssuedKeys | None:
        """The keys ``tid`` holds now (any terminal's last sign-on when ``tid`` is None), stale or not."""
        if tid is None:
            return max(self._issued.values(), key=lambda k: k.serial, default=None)
        return self._issued.get(tid)

    def state(self, tid: str) -> str:
        """``signed_on``, ``stale`` (keys older than ``key_life``) or ``not_signed_on``."""
        keys = self._issued.get(tid)
        if keys is None:
            return "not_signed_on"
        return "stale" if self.now() - keys.issued_at > self.key_life else "signed_on"

    def batch_for(self, tid: str, proposed: int) -> int:
        """The host's batch number for ``tid`` (60.2 of the CUP sign-on answer): the highest it has seen from
        this terminal, so it never goes back; a terminal that lost its journal gets its old number back."""
        batch = self._batches[tid] = max(self._batches.get(tid, 1), proposed)
        return batch

    def set_batch(self, tid: str, batch_no: int) -> None:
        """Tests: the host's books say ``tid`` is at ``batch_no``."""
        self._batches[tid] = batch_no
