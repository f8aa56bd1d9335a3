"""What the operator is told when the host declines for the PIN (``../shared/reference/emv-keys.md`` §C).

A PIN decline is final for that sale: nothing was charged, so no reversal is owed (the request was answered).
Codes: ISO 8583:1987 field 39 55 "incorrect PIN", 75 "allowable number of PIN tries exceeded"; CUP's response
code table 99 "PIN format error" (the block could not be decrypted: the pad's working key is not the host's);
Visa BASE I 81 "PIN cryptographic error" for the international dialects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["PIN_DECLINES", "decline_message"]

_AGAIN = "nothing was charged; "
PIN_DECLINES: Final[Mapping[str, Mapping[str, str]]] = {
    "all": {
        "55": "wrong PIN: " + _AGAIN + "start the sale again and ask the cardholder to re-enter the PIN",
        "75": "PIN tries exceeded, the card's PIN is blocked by the issuer: " + _AGAIN + "ask for another "
              "payment method",
        # not a PIN code, but the same shape: the host refused the request's MAC (openpos display.h "check
        # error / sign on again"); the engine journals a sign-on demand (engine/signon.py)
        "A0": "the host could not verify the MAC (this terminal's MAC key is not the host's): " + _AGAIN
              + "the terminal signs on again before the next transaction; repeat the sale",
    },
    "cup": {"99": "PIN format error (the PIN pad's working key is not the host's): " + _AGAIN + "sign on "
                  "again, then repeat the sale"},
    "iso": {"81": "PIN cryptographic error (the PIN pad's working key is not the host's): " + _AGAIN + "sign "
                  "on again, then repeat the sale"},
}


def decline_message(rc: str | None, dialect: str) -> str:
    """``declined (RC nn)``, with what to do when the code is about the PIN."""
    family = "cup" if dialect == "cup" else "iso"
    text = PIN_DECLINES[family].get(rc or "") or PIN_DECLINES["all"].get(rc or "")
    return f"declined (RC {rc}): {text}" if text else f"declined (RC {rc})"
