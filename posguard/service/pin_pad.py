"""The service's encrypting PIN pad (``pinpad.port``): opened when first needed, given the working PIN key after
each good sign-on, and handed to the card session as its online-PIN performer.

The working PIN key goes to the pad exactly as the sign-on brought it (encrypted under the TMK, with its check
value: :func:`posguard.emv.online_pin.load_pin_key`); the terminal never decrypts it. Without a usable pad (no
port, cannot open it, no working key because there is no TMK) :meth:`PinPadSlot.entry` gives None, and the card
session then announces no PIN in 9F33, so the card falls back to the CVM it allows without one (signature).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from posguard.drivers.pinpad import PinPad, PinPadError, open_pin_pad
from posguard.emv.online_pin import OnlinePin, load_pin_key

__all__ = ["PinPadSlot"]

Log = Callable[..., None]


class PinPadSlot:
    def __init__(self, port: str, log: Log, *, opener: Callable[[str], PinPad] = open_pin_pad) -> None:
        self.port = port
        self.log = log
        self.opener = opener
        self.pad: PinPad | None = None
        self._loaded: Any = None  # the WorkingKeys object whose PIN key is in the pad

    def entry(self, engine: Any, *, cancel: threading.Event | None = None) -> OnlinePin | None:
        """The online-PIN performer for the next card session, or None (no usable pad: announce no PIN)."""
        if not self.port:
            return None
        try:
            if self.pad is None:
                self.pad = self.opener(self.port)
            keys = engine.working_keys
            if keys is None and engine.terminal.tmk is not None:
                engine.sign_on(reason="PIN pad key")  # the pad needs this sign-on's working PIN key
                keys = engine.working_keys
            if keys is None:
                self.log("pinpad.no_key", "no working PIN key (no terminal master key, no sign-on): the card is "
                         "asked for no PIN", level="warning")
                return None
            if keys is not self._loaded:
                load_pin_key(self.pad, keys)
                self._loaded = keys
                self.log("pinpad.key_loaded", "working PIN key loaded into the PIN pad", kcv=keys.pin_kcv.hex().upper())
        except PinPadError as exc:
            self.log("pinpad.unavailable", str(exc), level="error", hint=exc.hint)
            self.close()
            return None
        return OnlinePin(self.pad, cancel=cancel)

    def close(self) -> None:
        if self.pad is not None:
            pad, self.pad, self._loaded = self.pad, None, None
            try:
                pad.close()
            except OSError:
                pass
