"""Field 55 of the reversal that undoes a sale the card declined at its second GENERATE AC.

The 0400 carries the card's **final** answer, not the first GENERATE AC's: when the host approved and the
card then answered AAC, the terminal rebuilds the reversal's field 55 from the data the card returned at the
second GENERATE AC — the TVR (95) after issuer authentication and scripts, the issuer application data (9F10,
whose CVR says the card declined at the second GENERATE AC and why), the IFD serial number (9F1E), the ATC
(9F36) and the issuer script results (DF31, the value the card reported as 9F5B).

Sources:

* ``pos-flows.md`` §B field 55: "Reversal carries 95, 9F10, 9F1E, 9F36, DF31 [OP]" — the tag list, which
  is the profile's ``reversal_icc_tags``.
* The UnionPay terminal code ``CaoEnXin/LiaoYang_POS`` ``Src/emvtranproc.c``: ``stReversalTagList`` (95,
  9F1E, 9F10, 9F36 mandatory, DF31) and ``UpdateEmvRevFile()``, "called only if emvProcessTrans() failed"
  (the card's final decision was a decline): it saves the script results and rebuilds the reversal's DE55
  from the kernel's data *after* the second GENERATE AC, and puts 06 in the reversal's field 39 when the host
  had said 00 (our :data:`~posguard.engine.engine.REASON_CARD_DECLINED`).
* EMV Book 4 Annex A5: the issuer script results (9F5B: per script, the result and the script identifier)
  are reported to the acquirer after the final GENERATE AC; CUP carries them as DF31 (the same LiaoYang
  source: ``stReversalTagList`` and ``stScriptResultTagList``).

No 9F26/9F27 (the AAC itself): neither the reference's list nor the UnionPay code sends the AAC in a reversal.
"""

from __future__ import annotations

from collections.abc import Sequence

from posguard.iso8583.tlv import TLV, build_tlv, parse_tlv

__all__ = ["SCRIPT_RESULTS_TAGS", "final_reversal_icc"]

#: where the card's issuer script results may be found in its final tag set (EMV 9F5B; CUP's own DF31)
SCRIPT_RESULTS_TAGS = ("DF31", "9F5B")


def final_reversal_icc(tags: Sequence[str], final_icc: bytes, script_results: bytes = b"") -> bytes:
    """The reversal's field 55: ``tags`` (in that order) taken from the card's final tag set ``final_icc``;
    DF31 is the script results (DF31 or 9F5B of ``final_icc``, else ``script_results``). A tag the card did not
    return is left out. Raises :class:`~posguard.iso8583.errors.TLVError` when ``final_icc`` is not BER-TLV.

    >>> final = bytes.fromhex("9F2701009F3602000795050000008000" "9F1007060110A0000000" "9F5B052000000001")
    >>> final_reversal_icc(("95", "9F10", "9F1E", "9F36", "DF31"), final).hex().upper()
    '950500000080009F1007060110A00000009F36020007DF31052000000001'
    """
    values = {t.tag: t.value for t in parse_tlv(final_icc)}
    scripts = next((values[t] for t in SCRIPT_RESULTS_TAGS if t in values), script_results)
    if scripts:
        values["DF31"] = scripts
    return build_tlv([TLV(tag, values[tag]) for tag in tags if tag in values])
