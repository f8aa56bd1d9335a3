"""Online PIN in the card session: the encrypting PIN pad gives the enciphered PIN block for field 52.

When the card's CVM list selects "enciphered PIN verified online" (CVM 02, EMV Book 3 §10.5) and the terminal
has a PIN pad, the session asks the pad for the ISO 9564 format-0 block of this PAN under the working PIN key
(``../shared/reference/emv-keys.md`` §C). The terminal never sees the clear PIN; the block goes to field 52 as
the pad made it and is verified by the issuer (9F34 result "unknown").

What each ending of the entry means (EMV Book 3 §10.5 and Book 4 §6.3.4, "PIN pad present but PIN not entered"):

* a block: online PIN, TVR byte 3 bit "online PIN entered" (04);
* bypass (OK with no PIN): this CVM failed, TVR byte 3 "PIN entry required, PIN pad present, but PIN was not
  entered" (08); the CVM list's next rule applies (signature on the UnionPay debit card);
* the pad not working (not responding, no working key): TVR byte 3 "PIN pad not present or not working" (10);
  the next rule applies;
* timeout or cancel (on the pad or by the terminal): :class:`PinEntryAborted` ends the card session — no sale
  is sent.

Offline PIN (plaintext VERIFY to the card, ``pin_entry`` of :func:`posguard.emv.session.read_card`) is kept for
readers with a keypad; on a real terminal the PCI PIN pad sends VERIFY to the card itself, the clear PIN never
passing through the terminal's application.

:func:`load_pin_key` is the step after a good sign-on: the working PIN key, still encrypted under the TMK as it
arrived (CUP field 62), is loaded into the pad with its check value; the terminal never decrypts it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from posguard.drivers.pinpad import (
    NoWorkingKey,
    PinBypassed,
    PinEntryCancelled,
    PinEntryTimeout,
    PinPadError,
)
from posguard.emv.cvm import TVR3_NO_PINPAD, TVR3_ONLINE_PIN, TVR3_PIN_NOT_ENTERED, CvmRule
from posguard.emv.errors import CardSessionError
from posguard.sensitive import Pan, PinBlock

__all__ = ["OnlinePin", "PinEntryAborted", "PinPadPort", "load_pin_key", "PIN_PAD_SLOT"]

#: the pad's key slot for the acquirer's working PIN key (field 53's key index)
PIN_PAD_SLOT = 1


class PinPadPort(Protocol):
    """What the session needs of a PIN pad (:class:`posguard.drivers.pinpad.PinPad` has it)."""

    def get_pin_block(self, pan: Any, *, slot: int = 1, timeout: int = 30, min_len: int = 4, max_len: int = 12,
                      cancel: threading.Event | None = None) -> bytes: ...

    def load_working_key(self, key_under_tmk: bytes, check_value: bytes, *, slot: int = 1) -> None: ...


class PinEntryAborted(CardSessionError):
    """The PIN entry ended without a block or a bypass (``reason``: ``timeout`` or ``cancelled``): no sale."""

    def __init__(self, message: str, *, reason: str, hint: str) -> None:
        self.reason = reason
        super().__init__(message, stage="online PIN entry", hint=hint)


@dataclass
class OnlinePin:
    """The PIN pad as the card session's online-PIN performer. After the session, :attr:`block` holds the
    encrypted block (or None: bypassed, not asked); :attr:`outcome` says what happened, for the operator."""

    pad: PinPadPort
    slot: int = PIN_PAD_SLOT
    timeout: int = 30  # seconds the cardholder has (the pad times out first)
    cancel: threading.Event | None = None  # set from another thread: the operator's or SIGTERM's cancel
    block: PinBlock | None = field(default=None, repr=False)
    outcome: str = "not asked"  # entered | bypassed | pad not working | not asked

    def perform(self, pan: Pan, rule: CvmRule) -> tuple[bool, int]:
        """Ask the pad for this PAN's block; (entered, TVR byte 3 bits). Raises :class:`PinEntryAborted`."""
        try:
            raw = self.pad.get_pin_block(pan, slot=self.slot, timeout=self.timeout, cancel=self.cancel)
        except PinBypassed:
            self.outcome = "bypassed"
            return False, TVR3_PIN_NOT_ENTERED
        except PinEntryTimeout:
            self.outcome = "timeout"
            raise PinEntryAborted("the cardholder did not enter the PIN in time", reason="timeout",
                                  hint="nothing was sent; start the sale again and ask for the PIN") from None
        except PinEntryCancelled as exc:
            self.outcome = "cancelled"
            raise PinEntryAborted(f"the PIN entry was cancelled by the {exc.by}", reason="cancelled",
                                  hint="nothing was sent; start the sale again if the customer wants to pay"
                                  ) from None
        except NoWorkingKey:
            self.outcome = "pad not working"  # no working key: sign on; the card's next CVM applies
            return False, TVR3_NO_PINPAD
        except PinPadError:
            self.outcome = "pad not working"
            return False, TVR3_NO_PINPAD
        self.block = PinBlock(raw)
        self.outcome = "entered"
        return True, TVR3_ONLINE_PIN


def load_pin_key(pad: PinPadPort, keys: Any, *, slot: int = PIN_PAD_SLOT) -> None:
    """After a good sign-on: load ``keys.pin_under_tmk`` (a :class:`posguard.engine.keys.WorkingKeys`) into the
    pad with ``keys.pin_kcv``; the pad decrypts it under its TMK and checks the value (``KeyCheckFailed``)."""
    pad.load_working_key(keys.pin_under_tmk, keys.pin_kcv, slot=slot)
