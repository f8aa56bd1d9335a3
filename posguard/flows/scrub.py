"""The last line of defence for text a flow writes (steps, incidents, notices, JSON).

:func:`posguard.sensitive.mask_digits_in_text` masks every 12-19 digit run, which would also hide the
12-digit RRN a customer needs as evidence. A PAN is 13-19 digits and passes the Luhn check, so this scrub
masks exactly those runs (and any 13-19 run that ends a longer number), keeping RRNs, STANs and amounts.

>>> scrub("card 4761739001010119 RRN 318220000001")
'card 476173******0119 RRN 318220000001'
"""

from __future__ import annotations

import re

from posguard.sensitive import luhn_ok, mask_pan

__all__ = ["scrub"]

_RUN = re.compile(r"\d{13,}")


def scrub(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        run = m.group(0)
        if len(run) > 19 or luhn_ok(run):
            return mask_pan(run) if len(run) <= 19 else "*" * len(run)
        return run

    return _RUN.sub(one, text)
