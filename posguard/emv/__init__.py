"""The EMV contact card session: selection, GPO, records, CVM, GENERATE AC, field 55.

    session = read_card(reader, EmvTerminal(pan_token_key=key), Transaction(amount=1234))
    ... send the sale with session.field55 ...
    final = complete(reader, session, host_approved=True, response_code="00")
"""

from posguard.emv.errors import (
    CardDataError,
    CardDeclined,
    CardSessionError,
    CardStatusError,
    NoSupportedApplication,
)
from posguard.emv.session import CardSession, SecondGac, complete, read_card
from posguard.emv.terminal import AidConfig, EmvTerminal, Transaction

__all__ = [
    "AidConfig", "CardDataError", "CardDeclined", "CardSession", "CardSessionError", "CardStatusError",
    "NoSupportedApplication", "SecondGac", "EmvTerminal", "Transaction", "complete", "read_card",
]
