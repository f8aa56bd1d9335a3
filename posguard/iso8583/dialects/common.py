"""Pieces the dialects share: composite layouts and per-message-type rules, as data."""

from __future__ import annotations

from posguard.iso8583.spec import Composite, MessageRule, Subfield


def field_55_tlv() -> Composite:
    """Field 55, ICC system-related data: EMV BER-TLV."""
    return Composite("tlv")


def field_90() -> Composite:
    """Field 90, original data elements (n42): MTI, STAN, transmission date/time, acquirer, forwarder."""
    return Composite("positional", (
        Subfield("1", 4, "Original MTI"),
        Subfield("2", 6, "Original STAN"),
        Subfield("3", 10, "Original transmission date and time (MMDDhhmmss)"),
        Subfield("4", 11, "Original acquiring institution ID"),
        Subfield("5", 11, "Original forwarding institution ID"),
    ))


#: fields every financial request of the international dialects carries
_FIN = ("3", "4", "11", "41", "42")
_CARD = (("2", "35"),)

ISO_RULES: tuple[MessageRule, ...] = (
    MessageRule("sale", "0200", (*_FIN, "49"), _CARD, (("3", "00"),),
                desc="financial request, purchase (processing code 00xxxx)"),
    MessageRule("void", "0200", (*_FIN, "37"), (), (("3", "02"),),
                desc="void of an approved sale: original RRN (37); processing code 02xxxx"),
    MessageRule("refund", "0200", (*_FIN, "37"), (), (("3", "20"),),
                desc="refund (credit) against an original: processing code 20xxxx, original RRN"),
    MessageRule("preauth", "0100", (*_FIN, "49"), _CARD, (),
                desc="authorisation request"),
    MessageRule("advice", "0220", _FIN, (), (), desc="financial advice"),
    MessageRule("advice_repeat", "0221", _FIN, (), (), desc="financial advice, repeat"),
    MessageRule("reversal", "0400", (*_FIN, "90"), (), (), ("52",),
                desc="reversal request: original data elements (90) name the original; no PIN block"),
    MessageRule("reversal_repeat", "0401", (*_FIN, "90"), (), (), ("52",), desc="reversal, repeat"),
    MessageRule("reversal_advice", "0420", (*_FIN, "90"), (), (), ("52",),
                desc="reversal advice: field 90 is mandatory"),
    MessageRule("reversal_advice_repeat", "0421", (*_FIN, "90"), (), (), ("52",),
                desc="reversal advice, repeat"),
    MessageRule("batch_upload", "0320", ("3", "11", "41", "42"), (), (), desc="batch upload / TC advice"),
    MessageRule("reconciliation", "0500", ("3", "11", "41", "42"), (("48", "74", "86", "88"),), (),
                desc="reconciliation request: totals in 48 or 74..89"),
    MessageRule("network", "0800", ("11", "41", "70"), (), (),
                desc="network management: 70 = 001 sign-on, 002 sign-off, 301 echo"),
)

CUP_RULES: tuple[MessageRule, ...] = (
    MessageRule("sale", "0200", ("3", "4", "11", "22", "25", "41", "42", "49", "60"), _CARD,
                (("3", "00"), ("60.1", "22")), desc="消费 purchase: 000000 / 25=00 / 60.1=22"),
    MessageRule("void", "0200", ("3", "4", "11", "25", "37", "41", "42", "49", "60", "61"), (),
                (("3", "20"), ("60.1", "23")),
                desc="消费撤销 void: 200000 / 60.1=23 / 37 and 61 (original batch+trace) of the original"),
    MessageRule("refund", "0220", ("3", "4", "11", "25", "37", "41", "42", "49", "60", "61"), (),
                (("3", "20"), ("60.1", "25")),
                desc="退货 refund: 0220 / 200000 / 60.1=25 / 37 and 61 (batch+trace+MMDD)"),
    MessageRule("preauth", "0100", ("3", "4", "11", "22", "25", "41", "42", "49", "60"), _CARD,
                (("3", "03"), ("60.1", "10")), desc="预授权 pre-authorisation: 030000 / 25=06 / 60.1=10"),
    MessageRule("balance", "0200", ("3", "11", "22", "25", "41", "42", "49", "60"), _CARD,
                (("3", "31"), ("60.1", "01")), desc="查询 balance inquiry"),
    MessageRule("reversal", "0400", ("3", "4", "11", "25", "39", "41", "42", "49", "60"), (), (),
                ("52", "35", "36"),
                desc="冲正 reversal: reuses the original STAN (11); 39 carries the reason (98, 96, 06, A0)"),
    MessageRule("advice", "0220", ("3", "4", "11", "41", "42", "60"), (), (), desc="offline advice"),
    MessageRule("batch_upload", "0320", ("11", "41", "42", "60"), (), (), desc="批上送 batch/TC upload"),
    MessageRule("reconciliation", "0500", ("11", "41", "42", "48", "49", "60"), (), (),
                desc="结算 settlement: totals in 48, 60.3 = 201"),
    MessageRule("network", "0800", ("11", "41", "42", "60"), (), (),
                desc="签到 sign-on (60.3 = 001/003), echo (301)"),
    MessageRule("network_advice", "0820", ("11", "41", "42", "60"), (), (), desc="签退 sign-off (60.3 = 002)"),
)
