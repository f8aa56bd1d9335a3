"""The EMV card session as the engine's card input.

:func:`card_data` turns a :class:`~posguard.emv.session.CardSession` (read up to the ARQC) into the
:class:`~posguard.card.CardData` the transaction engine takes. The token is the session's own
(keyed with ``EmvTerminal.pan_token_key``), so the terminal must use the same key for the engine's
``token_key``; the clear PAN stays inside a :class:`~posguard.sensitive.Pan` and prints masked.
"""

from __future__ import annotations

from posguard.card import CardData
from posguard.emv.session import CardSession

__all__ = ["card_data"]


def card_data(session: CardSession, *, entry_mode: str = "chip") -> CardData:
    """The engine's card input for a chip read: PAN, token, expiry, field 55, 9F34, entry mode ``chip``
    (or ``entry_mode``).

    ``cvm_required`` is left False: a chip session always carries 9F34, and
    :attr:`CardData.signature_required` reads the signature decision from it.
    Raises ValueError when the session carries no PAN (e.g. a session object built without one).
    """
    if not session.pan.reveal():
        raise ValueError("the card session has no PAN: read the card with posguard.emv.read_card")
    if session.pan.masked != session.masked_pan:
        raise ValueError("the card session's PAN does not match its masked PAN")
    if len(session.cvm_results) != 3:
        raise ValueError(f"9F34 (CVM Results) has {len(session.cvm_results)} bytes, expected 3")
    return CardData(
        pan=session.pan,
        pan_token=session.pan_token,
        expiry=session.expiry,
        field55=session.field55,
        cvm_results=session.cvm_results,
        cvm_required=False,
        entry_mode=entry_mode,
        scheme=session.scheme,
        pan_sequence=session.pan_sequence,
        pin_block=session.pin_block,
    )
