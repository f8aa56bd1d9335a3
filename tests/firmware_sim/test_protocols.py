"""Wire-level pieces without pcscd: Twin serial framing, T=1 blocks, fault specifications."""

from __future__ import annotations

import pytest

from firmware_sim import ccid, t1
from firmware_sim.card import Card
from firmware_sim.faults import Fault, FaultPlan, FaultSpecError

GET_FIRMWARE = bytes.fromhex("03 06 6B 01 00 00 00 00 00 00 00 00 02 6D")  # as libccidtwin sends it


def test_first_driver_frame_decodes_with_its_lrc() -> None:
    decoder = ccid.FrameDecoder()
    (received,) = decoder.feed(GET_FIRMWARE[:5]) + decoder.feed(GET_FIRMWARE[5:])
    assert received.message is not None and received.message.name == "Escape"
    assert received.message.data == b"\x02" and not received.bad_lrc


def test_garbage_is_skipped_and_a_bad_lrc_is_flagged() -> None:
    decoder = ccid.FrameDecoder()
    bad = GET_FIRMWARE[:-1] + b"\x00"
    units = decoder.feed(b"\x99\x42" + bad + ccid.NAK_FRAME)
    assert [u.bad_lrc for u in units] == [True, False] and units[1].nak
    assert decoder.skipped == 2


def test_answer_frames_carry_slot_sequence_and_status() -> None:
    request = ccid.Message.parse(bytes.fromhex("6F0500000000" "07" "000000") + b"\x00" * 5)
    answer = ccid.frame(ccid.rdr_message(ccid.RDR_DATA_BLOCK, request, icc=0, data=b"\x90\x00"))
    assert answer[:2] == b"\x03\x06" and answer[2] == 0x80 and answer[8] == 0x07
    assert ccid.lrc(answer) == 0


def test_t1_ifs_and_chained_i_blocks() -> None:
    card = Card("mastercard_nocvm")
    card.power_on()
    session = t1.T1Session(card.process)
    assert session.on_block(t1.block(0, 0xC1, b"\xfe")).response == t1.block(0, 0xE1, b"\xfe")
    select = bytes.fromhex("00A404000E315041592E5359532E444446303100")
    ack = session.on_block(t1.block(0, 0x20, select[:10])).response  # I(0, more)
    assert ack == t1.block(0, 0x90)  # R(1)
    answer = session.on_block(t1.block(0, 0x40, select[10:])).response  # I(1, last)
    assert answer is not None and answer[1] == 0x00 and answer[-3:-1] == b"\x90\x00"
    assert session.on_block(t1.block(0, 0x40, b"\x01")[:-1] + b"\x00").response == t1.block(0, 0x81)


def test_fault_specs_round_trip_and_count() -> None:
    fault = Fault.parse("sw sw=6A82 ins=B2 after=1 times=2")
    assert Fault.parse(fault.to_text()).to_text() == fault.to_text()
    plan = FaultPlan([fault])
    fired = [plan.take("sw", 0xB2) is not None for _ in range(4)]
    assert fired == [False, True, True, False]
    assert plan.take("sw", None) is None
    with pytest.raises(FaultSpecError):
        Fault.parse("meteor strike=1")


def test_noise_depends_only_on_the_seed() -> None:
    frame = bytes(range(64))
    runs = [FaultPlan(["noise flip=0.1 drop=0.1 dup=0.1 garbage=1 times=0"], seed=3).noisy(frame)
            for _ in range(2)]
    other = FaultPlan(["noise flip=0.1 drop=0.1 dup=0.1 garbage=1 times=0"], seed=4).noisy(frame)
    assert runs[0] == runs[1] != frame and other != runs[0]
