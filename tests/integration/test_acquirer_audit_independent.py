"""acq-audit: what the recorded demo day cannot show an acquirer's auditor, checked on the bytes of the wire.

A capture is sanitised as written (test PANs, no PIN block, no working keys: docs/capture-format.md), so its MACs
cannot be verified and its field 53 cannot be read. Here the real engine talks to the host simulator (strict:
sign-on keys, MAC, PIN checks) over TCP on a virtual clock, and every frame the link sends or receives is kept
as bytes. The auditor then works from those bytes alone, with tools that are neither posguard's nor the
simulator's:

* every message is decoded by pyiso8583 with the audit's own specs (tests/product/acquirer_audit.py);
* the working keys come out of the sign-on answer (CUP 62, ISO 48) decrypted under the terminal master key with
  ``psec`` TDES and checked against their check values (emv-keys.md (D): E(key, 0^8), first 4 bytes);
* every MAC (64, or 128 with a secondary bitmap) of a request and of an answer is verified with ``psec``'s ISO
  9797-1 algorithm 3 (X9.19) for the ISO dialects and the CUP "ECB" MAC written here from emv-keys.md (E), over
  the MTI to the end of the last field before the MAC (not the CUP TPDU/header);
* an online-PIN sale carries 52 with 53 (CUP 2600000000000000, ISO 2001010100000000: docs/keys-and-mac.md 3) and
  26 = 12, CUP 22 = 051, and the block decrypts under the sign-on's PIN key to an ISO 9564 format-0 block of the
  cardholder's PIN and this PAN; its reversal after a lost answer carries none of 26/35/36/52/53 and is accepted;
* the day passes the record-level audit (mandatory fields, STANs, answers, corrections, totals, PIN fields,
  entry modes) from the same bytes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import iso8583
import pytest

from firmware_sim.host import HostSimulator
from posguard.card import CardData
from posguard.drivers.magstripe import parse_swipe, swiped_card
from posguard.engine.detectors import Detectors
from posguard.engine.engine import TransactionEngine, TxnResult
from posguard.engine.hostlink import LinkEvent, LinkEventKind
from posguard.engine.journal import Journal
from posguard.iso8583.tlv import build_tlv, parse_tlv
from posguard.sensitive import PinBlock
from tests.engine.conftest import TERMINAL, TOKEN_KEY, card
from tests.host_sim.harness import keyed, linked
from tests.product import acquirer_audit as audit
from tests.secret_sweep import register_secret

with warnings.catch_warnings():  # psec reaches TripleDES through cryptography's old name
    warnings.simplefilter("ignore")
    import psec.des
    import psec.mac
    import psec.pinblock

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
STRIPE_PAN = "6250941006528599"  # a stripe card (Luhn-valid; tests/integration/test_swipe_tc_wire.py)
PIN_PAN = "6250941234567899"  # a UnionPay debit card the simulator's issuer file does not hold (no ARQC check)
PIN = "842917"
register_secret(TMK, PIN.encode())
SECURITY_CONTROL = {"cup": "2600000000000000", "iso87ascii": "2001010100000000"}


def _tdes(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    key = key * 2 if len(key) == 8 else key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes((psec.des.decrypt_tdes_ecb if decrypt else psec.des.encrypt_tdes_ecb)(key, data))


def _kcv(key: bytes) -> bytes:
    return _tdes(key, bytes(8))[:4]


def cup_ecb_mac(key: bytes, data: bytes) -> bytes:
    """emv-keys.md (E), step by step: XOR the zero-padded 8-byte blocks; the 16 hex characters of the result;
    encrypt the first 8 under the MAC key; XOR with the last 8; encrypt again; the first 8 hex characters."""
    padded = data + bytes(-len(data) % 8)
    acc = bytes(8)
    for i in range(0, len(padded), 8):
        acc = bytes(a ^ b for a, b in zip(acc, padded[i:i + 8], strict=True))
    hexed = acc.hex().upper().encode()
    step = _tdes(key, hexed[:8])
    step = _tdes(key, bytes(a ^ b for a, b in zip(step, hexed[8:], strict=True)))
    return step.hex().upper().encode()[:8]


def x919_mac(key: bytes, data: bytes) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bytes(psec.mac.generate_retail_mac(key[:8], key[8:], data, 1))


@dataclass(frozen=True)
class Frame:
    dir: str  # "out" to the host, "in" from it
    raw: bytes


@dataclass(frozen=True)
class Keys:
    pin: bytes
    mac: bytes


def working_keys(block: bytes) -> Keys:
    """The sign-on answer's key block (emv-keys.md (D), docs/keys-and-mac.md 1): PIN key (16) + KCV (4), MAC key
    slot (16: 8 bytes and 8 zeros for a single-length key) + KCV (4), each key under the TMK."""
    assert len(block) == 40, f"a {len(block)}-byte key block"
    pin = _tdes(TMK, block[0:16], decrypt=True)
    slot = block[20:36]
    mac = _tdes(TMK, slot[:8], decrypt=True) if slot[8:] == bytes(8) else _tdes(TMK, slot, decrypt=True)
    assert _kcv(pin) == block[16:20], "the PIN key does not match its check value"
    assert _kcv(mac) == block[36:40], "the MAC key does not match its check value"
    register_secret(pin, mac)
    return Keys(pin, mac)


def mac_problems(frames: list[Frame], dialect: str, keys: Keys) -> tuple[int, list[str]]:
    """(MACs verified, problems): a message of :data:`audit.MACED` without a MAC, or one that does not verify."""
    spec = audit.SPECS[dialect]
    header = 11 if dialect == "cup" else 0  # CUP: the TPDU and header are outside the MAC
    width = 8 if dialect == "cup" else 16  # CUP 64 binary; iso87ascii 64/128 as 16 hex characters
    verified, problems = 0, []
    for n, f in enumerate(frames):
        doc, _ = iso8583.decode(f.raw, spec)
        mti = str(doc["t"])
        request_mti = mti if f.dir == "out" else mti[:2] + str(int(mti[2]) - 1) + mti[3]
        field = "128" if "128" in doc else "64"
        if field not in doc:
            if request_mti[:2] != "08":
                problems.append(f"frame {n}: {f.dir} {mti} without a MAC")
            continue
        data = f.raw[header:len(f.raw) - width]
        if dialect == "cup":
            want = cup_ecb_mac(keys.mac, data)
            got = bytes.fromhex(str(doc[field]))
        else:
            want = x919_mac(keys.mac, data)
            got = bytes.fromhex(str(doc[field]))
        if got != want:
            problems.append(f"frame {n}: {f.dir} {mti} stan {doc.get('11')}: field {field} does not verify")
        verified += 1
    return verified, problems


def as_day(frames: list[Frame], dialect: str, presentations: list[tuple[int, str, str]],
           timeouts: list[tuple[int, str]]) -> audit.Day:
    spec = audit.SPECS[dialect]
    messages = []
    for n, f in enumerate(frames, 1):
        doc, _ = iso8583.decode(f.raw, spec)
        messages.append(audit.Msg(2 * n, f.dir, 0.0, dict(doc)))
    return audit.Day(dialect, messages, timeouts, presentations)


@dataclass
class Desk:
    dialect: str
    engine: TransactionEngine
    frames: list[Frame]
    #: (line, PAN, entry mode) of each card presented, on the frames' line numbers (2 per frame: before it)
    presentations: list[tuple[int, str, str]]
    sim: HostSimulator
    #: (line, detail) of each timeout the link reported, on the frames' line numbers
    timeouts: list[tuple[int, str]]

    def present(self, c: CardData) -> CardData:
        self.presentations.append((2 * len(self.frames) + 1, c.pan.reveal(), c.entry_mode))
        return c


@pytest.fixture(params=["cup", "iso87ascii"])
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    dialect = str(request.param)
    config = {"terminal_keys": {TERMINAL.terminal_id: TMK.hex().upper()}, "card_pins": {PIN_PAN: PIN}}
    with linked(dialect=dialect, sim_config=config, signed_on=False) as (sim, link, clock, _events):
        frames: list[Frame] = []
        timeouts: list[tuple[int, str]] = []

        def tap(event: LinkEvent) -> None:  # the bytes that crossed the wire, each way
            if event.kind == LinkEventKind.TIMEOUT:
                timeouts.append((2 * len(frames) + 1, f"{event.mti} STAN {event.stan} timed out"))
            if event.message is None:
                return
            if event.kind == LinkEventKind.SENT:
                frames.append(Frame("out", event.message.encode()))
            elif event.kind in (LinkEventKind.RESPONSE, LinkEventKind.LATE_RESPONSE):
                frames.append(Frame("in", event.message.encode()))

        link.add_listener(tap)
        terminal = keyed(TERMINAL, TMK.hex().upper())
        engine = TransactionEngine(Journal(tmp_path / "journal.db", clock=clock), link, dialect, terminal, clock,
                                   Detectors.default(clock))
        try:
            yield Desk(dialect, engine, frames, [], sim, timeouts)
        finally:
            engine.journal.close()


def swipe(service: str, *, fallback: bool = False) -> CardData:
    """A stripe read (ISO 7813 track 2, the serial reader's framing), or a chip card's stripe after its chip failed."""
    return swiped_card(parse_swipe(f";{STRIPE_PAN}=2812{service}1234567890123?"), TOKEN_KEY, fallback=fallback)


def chip_sale(e: TransactionEngine, c: CardData, amount: int) -> TxnResult:
    """A chip sale and the card's answer to the second GENERATE AC: a TC (a new cryptogram, 9F27 = 40, the ATC of
    the ARQC), as the till gives it to the engine for the TC upload (emv-keys.md (A) 8-10)."""
    result = e.sale(c, amount)
    if result.approved:
        tags = [(t.tag, t.value) for t in parse_tlv(c.field55)]
        tc = build_tlv([(tag, bytes(b ^ 0xFF for b in v) if tag == "9F26" else b"\x40" if tag == "9F27" else v)
                        for tag, v in tags])
        e.card_completed(result.txn_id, cryptogram_type="TC", field55=tc)
    return result


def pin_card(pin_key: bytes, amount: int) -> CardData:
    """A UnionPay debit card whose CVM chose online PIN, with the PIN pad's block under the sign-on's PIN key."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = _tdes(pin_key, bytes(psec.pinblock.encode_pinblock_iso_0(PIN, PIN_PAN)))
    register_secret(block)
    cvm = bytes.fromhex("420300")
    atc = (amount % 0xFFFF).to_bytes(2, "big")
    icc = build_tlv([("9F26", amount.to_bytes(8, "big")), ("9F27", b"\x80"), ("9F34", cvm), ("9F36", atc),
                     ("95", bytes(5)), ("9F10", bytes.fromhex("0110A00003220000")),
                     ("9F02", bytes.fromhex(f"{amount:012d}"))])
    c = CardData.from_pan(PIN_PAN, TOKEN_KEY, expiry="2812", field55=icc, cvm_results=cvm, scheme="unionpay",
                          pan_sequence="01")
    return replace(c, pin_block=PinBlock(block))


def test_every_mac_of_the_day_verifies_under_the_sign_on_key_and_the_pin_fields_are_right(desk: Desk) -> None:
    e, sim = desk.engine, desk.sim
    e.sign_on()
    keys = working_keys(_signon_keys(desk))
    kept = chip_sale(e, desk.present(card()), 100_00)
    voided = chip_sale(e, desk.present(card()), 20_00)
    swiped = e.sale(desk.present(swipe("101")), 15_00)
    fallback = e.sale(desk.present(swipe("201", fallback=True)), 16_00)
    assert kept.approved and voided.approved and swiped.approved and fallback.approved
    assert e.void(voided.txn_id).approved  # keyed from the journal: 01x
    assert e.refund(kept.txn_id, 10_00).approved
    pin_sale = chip_sale(e, desk.present(pin_card(keys.pin, 88_00)), 88_00)
    assert pin_sale.approved, pin_sale.operator_message
    sim.add_fault("no_response", mti="0200", times=1)
    lost = e.sale(desk.present(pin_card(keys.pin, 77_00)), 77_00)
    assert lost.state == "reversed", lost.operator_message
    result = e.settle()
    assert result is not None and not sim.refusals, sim.refusals

    verified, problems = mac_problems(desk.frames, desk.dialect, keys)
    assert problems == []
    spec = audit.SPECS[desk.dialect]
    maced = [f for f in desk.frames if not str(iso8583.decode(f.raw, spec)[0]["t"]).startswith("08")]
    assert verified == len(maced) > 15  # every request and answer of the day but the sign-on's

    day = as_day(desk.frames, desk.dialect, desk.presentations, desk.timeouts)
    sent = [iso8583.decode(f.raw, spec)[0] for f in desk.frames if f.dir == "out"]
    pin_requests = [doc for doc in sent if "52" in doc]
    assert len(pin_requests) == 2  # the two online-PIN sales, and nothing else
    for doc in pin_requests:
        assert doc["53"] == SECURITY_CONTROL[desk.dialect] and doc["26"] == "12"
        if desk.dialect == "cup":
            assert doc["22"] == "051"
        clear = _tdes(keys.pin, bytes.fromhex(str(doc["52"])), decrypt=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert psec.pinblock.decode_pinblock_iso_0(clear, PIN_PAN) == PIN
    [reversal] = [m for m in day.out() if day.kind(m) == "reversal"]
    assert not {"26", "35", "36", "52", "53"} & set(reversal.doc)
    checks = (audit.mandatory_problems, audit.stan_problems, audit.response_problems, audit.correction_problems,
              audit.upload_problems, audit.totals_problems, audit.settlement_action_problems,
              audit.reversal_copy_problems, audit.pin_field_problems, audit.entry_mode_problems)
    found = [p for check in checks for p in check(day)]
    assert found == [], '\n'.join(found)
    assert len(day.timeouts) == 1 and {day.kind(m) for m in day.out()} >= {"network", "sale", "void", "refund",
                                                                           "reversal", "settlement"}
    [refund] = [m for m in day.out() if day.kind(m) == "refund"]
    for change in ({"4": f"{100_01:012d}"}, {"61": refund.get("61")[:12] + "0101"} if day.cup else {"14": "2901"}):
        saved = dict(refund.doc)
        refund.doc.update(change)
        assert audit.correction_problems(day), change  # the refund check is no rubber stamp
        refund.doc.clear()
        refund.doc.update(saved)


def _signon_keys(desk: Desk) -> bytes:
    spec = audit.SPECS[desk.dialect]
    answers = [iso8583.decode(f.raw, spec)[0] for f in desk.frames if f.dir == "in"]
    [signon] = [d for d in answers if d["t"] == "0810"]
    value = str(signon["62" if desk.dialect == "cup" else "48"])
    return bytes.fromhex(value)


def test_the_auditors_mac_fails_on_a_changed_byte_or_another_key(desk: Desk) -> None:
    """The verifier is no rubber stamp: one byte of a MACed request changed, or the PIN key tried as the MAC key,
    and the MAC no longer verifies."""
    desk.engine.sign_on()
    keys = working_keys(_signon_keys(desk))
    assert desk.engine.sale(desk.present(card()), 12_00).approved
    assert mac_problems(desk.frames, desk.dialect, keys)[1] == []
    spec = audit.SPECS[desk.dialect]
    sale = next(i for i, f in enumerate(desk.frames) if f.dir == "out" and iso8583.decode(f.raw, spec)[0]["t"] == "0200")
    raw = bytearray(desk.frames[sale].raw)
    raw[-20] ^= 0x01  # a byte of the data before the MAC (an ASCII digit stays decodable: "0" <-> "1")
    tampered = [*desk.frames[:sale], Frame("out", bytes(raw)), *desk.frames[sale + 1:]]
    assert mac_problems(tampered, desk.dialect, keys)[1]
    assert mac_problems(desk.frames, desk.dialect, Keys(keys.pin, keys.pin[:8] if desk.dialect == "cup"
                                                          else keys.pin))[1]
