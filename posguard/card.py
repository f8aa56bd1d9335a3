"""Card data as the engine receives it: self-masking, testable without a reader.

This module sits below the drivers, the EMV session and the engine, so all of them may import it.
The card session (EMV, magstripe) hands the engine a :class:`CardData`. Its clear PAN is a
:class:`~posguard.sensitive.Pan`, so ``repr``/``str``/logging show only the masked form; the engine reveals
it only to build the host request and to seal it for a later void.
"""

from __future__ import annotations

from dataclasses import dataclass

from posguard.sensitive import Pan, PinBlock, TrackData, mask_pan, pan_token

__all__ = ["CardData", "Pan", "SIGNATURE_CVM_CODES", "is_signature_cvm", "scheme_of"]

#: 9F34 byte 1 (CVM code, bit 7 "apply next" masked off) meaning "a signature is required":
#: 1E signature (paper), 03 plaintext PIN by ICC + signature, 05 enciphered PIN by ICC + signature.
SIGNATURE_CVM_CODES = frozenset({0x1E, 0x03, 0x05})


def is_signature_cvm(cvm_results: bytes | None) -> bool:
    """True when 9F34 (CVM Results) says the cardholder must sign."""
    return bool(cvm_results) and (cvm_results[0] & 0x3F) in SIGNATURE_CVM_CODES  # type: ignore[index]


@dataclass(frozen=True, repr=False)
class CardData:
    """What the engine needs from a card session.

    ``pan_token`` is the keyed token used for matching; ``pan_masked`` the printable form.
    ``cvm_required`` forces a signature when there is no 9F34 (magstripe service code 1xx/2xx + signature).
    """

    pan: Pan
    pan_token: str
    expiry: str | None = None  # YYMM
    field55: bytes = b""
    cvm_results: bytes | None = None  # 9F34, 3 bytes
    cvm_required: bool = False
    entry_mode: str = "chip"  # chip | contactless | swipe | manual | fallback
    scheme: str | None = None  # visa | mastercard | unionpay | ...
    #: a swipe's track 2 / track 3 (self-masking; sent in fields 35 / 36, never journaled in clear)
    track2: TrackData | None = None
    track3: TrackData | None = None
    pan_sequence: str | None = None  # 5F34 of a chip card, two digits (field 23)
    #: the encrypted online PIN block from the PIN pad (field 52); never printed, pickled or journaled
    pin_block: PinBlock | None = None
    #: a chip card still in the reader, waiting for the terminal's second GENERATE AC after the host answers
    #: (EMV Book 3 §10, ``emv-keys.md`` (A) 8): the engine keeps the sale's reversal armed until the card's
    #: answer is known (:meth:`~posguard.engine.engine.TransactionEngine.card_completed` / ``card_declined``)
    second_gac: bool = False

    @classmethod
    def from_pan(
        cls, pan: str | Pan, token_key: bytes, *, expiry: str | None = None, field55: bytes = b"",
        cvm_results: bytes | None = None, cvm_required: bool = False, entry_mode: str = "chip",
        scheme: str | None = None, track2: TrackData | None = None, track3: TrackData | None = None,
        pan_sequence: str | None = None,
    ) -> CardData:
        p = pan if isinstance(pan, Pan) else Pan(pan)
        return cls(p, pan_token(p.reveal(), token_key), expiry, field55, cvm_results, cvm_required, entry_mode, scheme,
                   track2, track3, pan_sequence)

    @property
    def pan_masked(self) -> str:
        return mask_pan(self.pan.reveal())

    @property
    def signature_required(self) -> bool:
        return self.cvm_required or is_signature_cvm(self.cvm_results)

    def __repr__(self) -> str:
        cvm = self.cvm_results.hex().upper() if self.cvm_results else None
        return (
            f"CardData(pan={self.pan_masked!r}, token={self.pan_token[:8]}…, entry_mode={self.entry_mode!r}, "
            f"scheme={self.scheme!r}, 9F34={cvm}, field55={len(self.field55)} bytes"
            f"{', online PIN block' if self.pin_block is not None else ''})"
        )

    __str__ = __repr__


def scheme_of(pan: str) -> str | None:
    """The card scheme from the PAN's leading digits (a swipe has no AID to tell it)."""
    if pan.startswith("62"):
        return "unionpay"
    if pan[:1] == "4":
        return "visa"
    if pan[:2] in ("51", "52", "53", "54", "55") or "2221" <= pan[:4] <= "2720":
        return "mastercard"
    return None
