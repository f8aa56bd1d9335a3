"""What the issuer sends back to the card: issuer authentication data (91) and issuer scripts (71, 72).

The host's answer carries them in field 55 (``emv-keys.md`` (A) 6): 91 = ARPC + ARC (or ARPC + CSU); each
script is a template 71 (delivered before the second GENERATE AC) or 72 (after it), holding an optional
script identifier 9F18 and the commands in 86 (EMV Book 3 §10.10, Book 4 Annex A5).

:func:`parse_issuer_data` reads them (a malformed field 55 is an :class:`IssuerDataError` naming the tag
path, e.g. ``55.71.86``); :func:`run_scripts` delivers the commands of one template and returns the issuer
script results, 5 bytes per script (9F5B, EMV Book 4 Annex A5):

* byte 1, bits 8-5: ``0`` script not performed, ``1`` script processing failed, ``2`` successful;
  bits 4-1: sequence number (1-14, 15 = 15 or more) of the command that failed, 0 when none did;
* bytes 2-5: the script identifier (9F18), zeros when the script has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from posguard.emv.channel import CardChannel
from posguard.emv.errors import CardDataError
from posguard.iso8583.errors import TLVError
from posguard.iso8583.tlv import TLV, find_tag, parse_tlv

__all__ = ["IssuerData", "IssuerDataError", "IssuerScript", "parse_issuer_data", "run_scripts",
           "TVR5_ISSUER_AUTH_FAILED", "TVR5_SCRIPT_FAILED_BEFORE", "TVR5_SCRIPT_FAILED_AFTER",
           "TSI1_ISSUER_AUTH", "TSI1_SCRIPTS"]

#: TVR byte 5 (EMV Book 3 Annex C5): issuer authentication failed; script processing failed before / after the
#: final GENERATE AC
TVR5_ISSUER_AUTH_FAILED, TVR5_SCRIPT_FAILED_BEFORE, TVR5_SCRIPT_FAILED_AFTER = 0x40, 0x20, 0x10
#: TSI byte 1 (EMV Book 3 Annex C6): issuer authentication was performed; script processing was performed
TSI1_ISSUER_AUTH, TSI1_SCRIPTS = 0x10, 0x04
#: SW1 values after which a script goes on (EMV Book 3 §10.10): normal processing and warnings
_SW1_CONTINUE = (0x90, 0x62, 0x63)


class IssuerDataError(CardDataError):
    """The issuer's part of the host's field 55 does not parse (``path`` names the tag, ``offset`` the byte)."""

    default_hint = "the host's answer carries malformed issuer data: report it to the acquirer"


@dataclass(frozen=True)
class IssuerScript:
    """One issuer script: its template (``71`` before the second GENERATE AC, ``72`` after)."""

    template: str
    script_id: bytes
    commands: tuple[bytes, ...]


@dataclass(frozen=True)
class IssuerData:
    """91 and the scripts out of the host answer's field 55 (empty when it has none)."""

    auth_data: bytes | None = None
    scripts: tuple[IssuerScript, ...] = ()

    def of(self, template: str) -> tuple[IssuerScript, ...]:
        return tuple(s for s in self.scripts if s.template == template)


def parse_issuer_data(field55: bytes | None) -> IssuerData:
    """91, 71 and 72 out of the answer's field 55 (other tags are ignored)."""
    if not field55:
        return IssuerData()
    try:
        items = parse_tlv(field55, path="55")
    except TLVError as exc:
        raise IssuerDataError(f"the host's field 55 does not parse: {exc.reason}", stage="issuer data",
                              path=exc.path, offset=exc.offset) from None
    auth = find_tag(items, "91")
    scripts = [_script(item) for item in items if item.tag in ("71", "72")]
    return IssuerData(auth.value if auth is not None else None, tuple(scripts))


def _script(item: TLV) -> IssuerScript:
    path = f"55.{item.tag}"
    try:
        children = item.children
    except TLVError as exc:
        raise IssuerDataError(f"issuer script template does not parse: {exc.reason}", stage="issuer data",
                              path=exc.path or path, offset=exc.offset) from None
    ident = b""
    commands = []
    for child in children:
        if child.tag == "9F18":
            if len(child.value) != 4:
                raise IssuerDataError(f"script identifier has {len(child.value)} bytes, expected 4",
                                      stage="issuer data", path=f"{path}.9F18")
            ident = child.value
        elif child.tag == "86":
            if len(child.value) < 4:
                raise IssuerDataError(f"issuer script command of {len(child.value)} bytes, expected at least 4",
                                      stage="issuer data", path=f"{path}.86")
            commands.append(child.value)
    return IssuerScript(item.tag, ident, tuple(commands))


def run_scripts(ch: CardChannel, scripts: Iterable[IssuerScript]) -> tuple[bytes, bool]:
    """Deliver each script's commands in order; a command answered other than 90xx/62xx/63xx ends its script.
    Returns (the 9F5B results of these scripts, whether any failed)."""
    results = bytearray()
    failed_any = False
    for script in scripts:
        failed_at = 0
        for n, command in enumerate(script.commands, 1):
            r = ch.send(command, f"issuer script {script.template} command {n}")
            if r.sw >> 8 not in _SW1_CONTINUE:
                failed_at = min(n, 15)
                break
        status = 0x10 | failed_at if failed_at else 0x20
        failed_any = failed_any or bool(failed_at)
        results += bytes((status,)) + (script.script_id or bytes(4))
    return bytes(results), failed_any
