"""The simulator as a CUP acquirer, driven by pyiso8583-built terminal messages over loopback TCP."""

from __future__ import annotations

from firmware_sim.host import HostSimulator

from .wire import OTHER_PAN, WireClient, cup_refund, cup_reversal, cup_sale, cup_void


def test_sale_is_approved_with_rrn_auth_code_and_echoed_fields(cup_sim: HostSimulator, cup_client: WireClient):
    resp = cup_client.exchange(cup_sale(1, 1000))
    assert resp["t"] == "0210"
    assert resp["39"] == "00"
    assert resp["11"] == "000001" and resp["4"] == "000000001000" and resp["3"] == "000000"
    assert resp["41"] == "TERM0001" and resp["42"] == "123456789012345"
    assert len(resp["37"]) == 12 and resp["37"].isdigit()
    assert len(resp["38"]) == 6
    assert "2" not in resp and "35" not in resp
    # TPDU destination and source swapped in the response
    assert resp["h"] == "6000000003" + "603100000000"
    [sale] = cup_sim.ledger.find(kind="sale")
    assert (sale.status, sale.amount, sale.rrn, sale.auth_code) == ("approved", 1000, resp["37"], resp["38"])
    assert sale.pan_masked == "622202*********0123"


def test_ledger_never_holds_the_clear_pan(cup_sim: HostSimulator, cup_client: WireClient):
    cup_client.exchange(cup_sale(1, 1000))
    dump = cup_sim.ledger.dump_json()
    assert "6222021234567890123" not in dump
    assert "6222021234567890123" not in repr(cup_sim.received)


def test_duplicate_transmission_of_same_stan_tid_amount_gets_94(cup_sim: HostSimulator, cup_client: WireClient):
    assert cup_client.exchange(cup_sale(7, 500))["39"] == "00"
    assert cup_client.exchange(cup_sale(7, 500))["39"] == "94"
    assert cup_client.exchange(cup_sale(7, 501))["39"] == "00"  # another amount is another request
    assert len(cup_sim.ledger.find(kind="sale", status="approved")) == 2


def test_void_before_settlement_undoes_the_sale(cup_sim: HostSimulator, cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    void = cup_client.exchange(cup_void(2, 1000, sale["37"], sale["38"], 1))
    assert void["39"] == "00" and void["t"] == "0210"
    assert cup_sim.ledger.find(kind="sale")[0].status == "voided"
    # a second void of the same sale is an abnormal related transaction
    assert cup_client.exchange(cup_void(3, 1000, sale["37"], sale["38"], 1))["39"] == "22"


def test_void_rules_wrong_card_partial_amount_unknown_original(cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    assert cup_client.exchange(cup_void(2, 1000, sale["37"], sale["38"], 1, pan=OTHER_PAN))["39"] == "14"
    assert cup_client.exchange(cup_void(3, 400, sale["37"], sale["38"], 1))["39"] == "13"
    assert cup_client.exchange(cup_void(4, 1000, "999999999999", "000000", 1))["39"] == "25"


def test_reversal_matched_by_stan_and_tid_undoes_the_sale(cup_sim: HostSimulator, cup_client: WireClient):
    req = cup_sale(5, 2500)
    cup_client.exchange(req)
    resp = cup_client.exchange(cup_reversal(req))
    assert resp["t"] == "0410" and resp["39"] == "00"
    assert cup_sim.ledger.find(kind="sale")[0].status == "reversed"
    # the repeat 0401 is answered 0410/00 again and changes nothing
    repeat = dict(cup_reversal(req), t="0401")
    assert cup_client.exchange(repeat)["39"] == "00"
    assert cup_sim.ledger.totals("TERM0001").sale_count == 0


def test_reversal_without_original_answers_25(cup_client: WireClient):
    assert cup_client.exchange(cup_reversal(cup_sale(42, 100)))["39"] == "25"


def test_reversal_of_a_void_reinstates_the_sale(cup_sim: HostSimulator, cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    void_req = cup_void(2, 1000, sale["37"], sale["38"], 1)
    cup_client.exchange(void_req)
    assert cup_client.exchange(cup_reversal(void_req))["39"] == "00"
    statuses = {e.kind: e.status for e in cup_sim.ledger.find(tid="TERM0001") if e.kind in ("sale", "void")}
    assert statuses == {"sale": "approved", "void": "reversed"}


def test_refund_capped_at_the_original_amount(cup_sim: HostSimulator, cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    first = cup_client.exchange(cup_refund(2, 600, sale["37"], 1))
    assert first["t"] == "0230" and first["39"] == "00"
    assert cup_client.exchange(cup_refund(3, 500, sale["37"], 1))["39"] == "13"
    assert cup_client.exchange(cup_refund(4, 400, sale["37"], 1))["39"] == "00"
    assert cup_client.exchange(cup_refund(5, 400, "000000000000", 1))["39"] == "25"
    assert cup_sim.ledger.find(kind="sale")[0].refunded == 1000


def test_preauth_and_balance_inquiry(cup_sim: HostSimulator, cup_client: WireClient):
    pre = dict(cup_sale(1, 5000, mti="0100"), **{"3": "030000", "25": "06", "60": "10000001000"})
    resp = cup_client.exchange(pre)
    assert resp["t"] == "0110" and resp["39"] == "00"
    assert cup_sim.ledger.find(kind="preauth")[0].amount == 5000
    bal = dict(cup_sale(2, 0), **{"3": "310000", "60": "01000001000"})
    del bal["4"]
    resp = cup_client.exchange(bal)
    assert resp["39"] == "00" and resp["54"]


def test_sign_on_returns_working_keys_and_echo(cup_sim: HostSimulator, cup_client: WireClient):
    cup_sim.processor.working_keys_62 = "11" * 20
    signon = {"t": "0800", "11": "000001", "41": "TERM0001", "42": "123456789012345",
              "60": "00000001003", "63": "001"}
    resp = cup_client.exchange(signon)
    assert (resp["t"], resp["39"], resp["62"]) == ("0810", "00", "11" * 20)
    echo = dict(signon, **{"60": "00000001301"})
    del echo["63"]
    assert cup_client.exchange(echo)["39"] == "00"


def test_settlement_balanced_and_unbalanced_flags_in_48(cup_sim: HostSimulator, cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    cup_client.exchange(cup_sale(2, 2000))
    cup_client.exchange(cup_refund(3, 300, sale["37"], 1))

    def settle(stan: int, sales: int, sales_n: int, refunds: int, refunds_n: int) -> str:
        f48 = f"{sales:012d}{sales_n:03d}{refunds:012d}{refunds_n:03d}0" + "0" * 31
        req = {"t": "0500", "11": f"{stan:06d}", "41": "TERM0001", "42": "123456789012345",
               "48": f48, "49": "156", "60": "00000001201", "63": "001"}
        resp = cup_client.exchange(req)
        assert resp["t"] == "0510" and resp["39"] == "00"
        return str(resp["48"][30])

    assert settle(4, 3000, 2, 300, 1 + 1) == "2"  # unbalanced: batch stays open
    assert cup_sim.ledger.totals("TERM0001").sale_count == 2
    assert settle(5, 3000, 2, 300, 1) == "1"  # balanced: batch closed
    assert cup_sim.ledger.totals("TERM0001").sale_count == 0


def test_batch_end_0320_closes_an_unbalanced_batch(cup_sim: HostSimulator, cup_client: WireClient):
    cup_client.exchange(cup_sale(1, 1000))
    upload = {"t": "0320", "11": "000002", "41": "TERM0001", "42": "123456789012345", "60": "00000001202"}
    assert cup_client.exchange(upload)["t"] == "0330"
    assert cup_sim.ledger.totals("TERM0001").sale_count == 0


def test_offline_advice_is_booked_once(cup_sim: HostSimulator, cup_client: WireClient):
    adv = dict(cup_sale(9, 700, mti="0220"), **{"60": "36000001000"})
    assert cup_client.exchange(adv)["t"] == "0230"
    assert cup_client.exchange(adv)["39"] == "00"  # store-and-forward resend: acknowledged, not re-booked
    assert cup_sim.ledger.totals("TERM0001").sale_amount == 700


def test_repeated_refund_advice_is_booked_once(cup_sim: HostSimulator, cup_client: WireClient):
    """A terminal that crashed before the 0230 repeats the refund as 0221: answered from the books."""
    sale = cup_client.exchange(cup_sale(1, 1000))
    first = cup_client.exchange(cup_refund(2, 300, sale["37"], 1))
    repeat = cup_client.exchange(dict(cup_refund(2, 300, sale["37"], 1), t="0221"))
    assert (first["39"], repeat["t"], repeat["39"], repeat["37"]) == ("00", "0230", "00", first["37"])
    [refund] = cup_sim.ledger.find(kind="refund")
    assert cup_sim.ledger.find(kind="sale")[0].refunded == 300 and refund.amount == 300


def test_repeat_of_an_advice_never_received_is_booked(cup_sim: HostSimulator, cup_client: WireClient):
    sale = cup_client.exchange(cup_sale(1, 1000))
    assert cup_client.exchange(dict(cup_refund(2, 300, sale["37"], 1), t="0221"))["39"] == "00"
    assert cup_sim.ledger.find(kind="sale")[0].refunded == 300


def test_a_reversal_with_pin_fields_but_no_pin_block_is_a_format_error(cup_sim: HostSimulator,
                                                                       cup_client: WireClient):
    """26 (PIN capture code) and 53 (security control) describe the block in 52; a request that carries them
    without it is malformed (RC 30, nothing undone). The terminal's saved reversal leaves all three out (openpos
    ``trans.c``; acq-audit found posguard's 0400 of an online-PIN sale still carrying 26)."""
    req = cup_sale(5, 2500)
    assert cup_client.exchange(req)["39"] == "00"
    for stray in ({"26": "12"}, {"53": "2600000000000000"}):
        resp = cup_client.exchange(dict(cup_reversal(req), **stray))
        assert resp["t"] == "0410" and resp["39"] == "30"
        assert cup_sim.ledger.find(kind="sale")[0].status == "approved"
    assert "without a PIN block" in cup_sim.ledger.find(kind="reversal")[-1].note
    assert cup_client.exchange(cup_reversal(req))["39"] == "00"
    assert cup_sim.ledger.find(kind="sale")[0].status == "reversed"


def test_a_reversal_that_is_not_its_originals_copy_undoes_nothing(cup_sim: HostSimulator, cup_client: WireClient):
    """A reversal matched by STAN and terminal still carries its original's PAN and amount: another PAN is 14,
    another amount 13, and the sale stands (acq-audit: the simulator lacked the check its audit makes)."""
    req = cup_sale(5, 2500)
    assert cup_client.exchange(req)["39"] == "00"
    assert cup_client.exchange(dict(cup_reversal(req), **{"2": OTHER_PAN}))["39"] == "14"
    assert cup_client.exchange(dict(cup_reversal(req), **{"4": f"{2400:012d}"}))["39"] == "13"
    assert cup_sim.ledger.find(kind="sale")[0].status == "approved"
    assert [e.note.split(";")[0] for e in cup_sim.ledger.find(kind="reversal")] == [
        "the reversal's PAN is not the PAN of the transaction it reverses",
        "the reversal's amount 2400 is not the original's 2500"]
    assert cup_client.exchange(cup_reversal(req))["39"] == "00"
    assert cup_sim.ledger.find(kind="sale")[0].status == "reversed"
