"""``posguard run`` on the POS box's worst day, as a real process against the host simulator and a card in the
rig: what an operator, a full disk or a clumsy technician does to it. Each test names the finding it answers."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.host import HostSimulator
from firmware_sim.rig.sims import vpcd_card
from posguard.card import CardData
from posguard.config import load_config
from posguard.engine.journal import Journal
from posguard.service.run import EventLog, Service
from tests.engine.conftest import VISA_PAN
from tests.product.conftest import clear_pan_hits
from tests.product.stdin_service import LOGS, stdin_service
from tests.product.test_service import host, write_config
from tests.product.test_service_faults import _ask, _client, _start, _stop, _wait_socket
from tests.product.test_service_faults import _config as _socket_config
from tests.product.test_supervisor import SECRET, STORED, service

__all__ = ["host", "service"]  # the simulator and in-process service fixtures, shared with their modules


def _events(lines: list[str], name: str) -> list[dict[str, object]]:
    found = []
    for line in lines:
        if line.strip():
            obj = json.loads(line)
            if obj.get("event") == name:
                found.append(obj)
    return found


@pytest.mark.pcscd
def test_a_journal_deleted_under_the_service_is_written_back_and_the_service_restarts(
        tmp_path: Path, host: HostSimulator) -> None:
    """Finding "journal deleted under the service": SQLite went on writing to the deleted file, the status said
    ``journal: ok``, the next sale was approved and journaled there, and at the stop the day was gone (a restart
    found an empty journal; the host held charges the terminal had forgotten, and the STANs began again at 1).
    Now the next command is refused before anything acts, the open journal is written back to its path and the
    service stops with exit 1 (so systemd restarts it on the day it had)."""
    config = write_config(tmp_path, host.port)
    journal = tmp_path / "journal.db"
    LOGS.clear()
    with vpcd_card("visa_credit_sig"):
        with stdin_service(config) as service:
            sale = service.ask("sale 1250")
            assert sale["ok"] and sale["rc"] == "00", sale
            for f in tmp_path.glob("journal.db*"):  # rm /var/lib/posguard/journal.db*
                f.unlink()
            refused = service.ask("sale 2000")
            assert not refused["ok"] and "txn" not in refused, refused
            assert f"journal {journal} was deleted" in refused["error"], refused
            assert "written back" in refused["error"] and "exit 1" in refused["error"], refused
            assert service.proc.wait(timeout=30) == 1  # it stops by itself, before the SIGTERM of the block's end
        assert service.returncode == 1, service.err
        assert "Traceback" not in service.err
        [said] = _events(LOGS + service.out.splitlines(), "journal.displaced")
        assert said["level"] == "critical" and said["copy"] == str(journal)
        assert [r["t"] for r in host.received].count("0200") == 1  # the refused sale never went out
        with Journal(journal) as kept:
            assert kept.integrity_check() == ["ok"]
            assert [(t.id, t.state, t.rrn) for t in kept.find_txns() if t.kind == "sale"] == [
                (sale["txn"], sale["state"], sale["rrn"])]
        with stdin_service(config) as again:  # the restart carries on from the day it had
            status = again.ask("status")
            assert status["journal"] == "ok" and status["states"] == {sale["state"]: 1}, status
            second = again.ask("sale 2000")
            assert second["ok"] and second["txn"] != sale["txn"], second
        assert again.returncode == 0, again.err
    assert clear_pan_hits("".join(LOGS).encode() + service.out.encode() + again.out.encode()) == []


def test_a_journal_that_refuses_writes_is_named_with_what_to_do(service: tuple[Service, io.StringIO]) -> None:
    """Finding "disk full": with the journal's disk full a command answered ``OperationalError: database or disk
    is full`` (no journal named, nothing to do) while ``status`` went on saying ``journal: ok``. The failure is
    SQLite's own: ``PRAGMA query_only`` makes every write of the service's connection fail as SQLITE_FULL does
    (tests/engine/test_disk_full.py says why not ``max_page_count``)."""
    svc, log = service
    sale = svc.till.do("sale", card="c1", amount=50_00)
    assert sale is not None and sale.approved
    svc.journal._conn.execute("PRAGMA query_only = ON")  # the disk is full from here
    refused = svc.handle(f"void {sale.txn_id} sup={SECRET}")
    assert not refused["ok"], refused
    error = refused["error"]
    assert error.startswith(f"void stopped: the journal {svc.cfg.journal} cannot be written (")
    assert "free disk space" in error and "posguard diagnose --check journal" in error
    assert svc.handle("status")["journal"] == "failing: " + error
    [said] = [json.loads(line) for line in log.getvalue().splitlines() if '"journal.write_failed"' in line]
    assert said["level"] == "error" and said["verb"] == "void"
    svc.journal._conn.execute("PRAGMA query_only = OFF")  # space returns
    voided = svc.handle(f"void {sale.txn_id} sup={SECRET}")
    assert voided["ok"] and voided["rc"] == "00", voided
    assert svc.handle("status")["journal"] == "ok"


def test_an_unknown_transaction_names_a_command_that_exists(service: tuple[Service, io.StringIO]) -> None:
    """Finding "a refusal pointing at a command that does not exist": ``sign POSGRD01-00000099`` answered
    ``JournalError: no transaction ... list them with `posguard engine txns``` (there is no such command)."""
    svc, _log = service
    journal = svc.cfg.journal
    answer = svc.handle("sign POSGRD01-00000099")
    assert answer == {"ok": False, "error": f"no transaction 'POSGRD01-00000099' in {journal}; list them with "
                                            f"`posguard engine journal {journal}`"}


@pytest.mark.pcscd
def test_a_sale_reversed_by_the_recovery_after_a_kill_9_tells_its_customer(
        tmp_path: Path, host: HostSimulator) -> None:
    """Finding "kill -9 mid-sale: the customer is never told": the host had the 0200 (and booked it) when the
    service was killed; the restart's recovery reversed the sale (0400 acknowledged), the books agreed, but no
    notice reached the outbox -- a sale reversed at the counter gets one. The kill waits for the host to hold the
    request (its answer is held back 5 s), so it lands between the send and the answer every time."""
    config = write_config(tmp_path, host.port)
    host.add_fault("delay", delay=5.0, mti="0200", times=1)
    LOGS.clear()
    with vpcd_card("visa_credit_sig"):
        with stdin_service(config) as killed:
            _kill_9_once_the_host_has(killed, "sale 1250", host, "00")
        with stdin_service(config) as again:
            status = again.ask("status")
        assert again.returncode == 0, again.err
    assert status["states"] == {"reversed": 1} and status["pending"] == 0, status
    with Journal(tmp_path / "journal.db") as journal:
        [sale] = journal.find_txns()
    assert [e.status for e in host.ledger.find(kind="sale")] == ["reversed"]
    notice = tmp_path / "outbox" / f"txn-{sale.id}-reversal.txt"
    assert notice.exists(), sorted(p.name for p in (tmp_path / "outbox").glob("*"))
    text = notice.read_text()
    assert "Payment reversed" in text and "476173******0119" in text and "CNY 12.50" in text
    [said] = _events(LOGS + again.out.splitlines(), "sale.reversed_at_start")
    assert said["txn"] == sale.id and said["level"] == "warning"
    assert clear_pan_hits(text.encode() + again.out.encode()) == []


def test_a_lock_file_deleted_under_the_service_is_retaken_and_a_second_service_still_refuses(
        tmp_path: Path, host: HostSimulator) -> None:
    """Finding "two services on one journal, after all": with the lock file deleted under a running service (a
    clean-up script, ``rm /var/lib/posguard/*.lock``), a second ``posguard run`` on the same journal started and
    ran its recovery on the first one's transactions. Now the first one retakes the lock when it notices (before
    the next command, or idle), and the second refuses naming it, as without the deletion."""
    config, sock = _socket_config(tmp_path, host.port)
    lock_file = tmp_path / "journal.db.lock"
    first = _start(config)
    try:
        _wait_socket(sock, first)
        lock_file.unlink()
        assert _ask(_client(sock), "flush")["ok"]  # the check before each command retakes it
        assert lock_file.read_text() == f"{first.pid}\n"
        second = _start(config)
        out, _err = second.communicate(timeout=60)
        assert second.returncode == 2, out
        [refusal] = _events(out.splitlines(), "service.not_started")
        assert refusal["holder_pid"] == first.pid
    finally:
        code, out, err = _stop(first)
    assert code == 0, err
    [said] = _events(out.splitlines(), "journal.lock_retaken")
    assert said["level"] == "warning" and str(lock_file) in str(said["msg"])


def _kill_9_once_the_host_has(service: Any, line: str, host: HostSimulator, proc_prefix: str) -> None:
    """Send ``line`` and SIGKILL the service as soon as the host holds its 0200 (processing code
    ``proc_prefix``...): between the send and the answer, every time (the host holds its answer back)."""
    assert service.proc.stdin is not None
    service.proc.stdin.write(line + "\n")
    service.proc.stdin.flush()
    for _poll in range(1500):  # the card is read, then the 0200 goes out: poll the host, not a clock
        if any(r["t"] == "0200" and r["3"].startswith(proc_prefix) for r in host.received):
            break
        assert service.proc.poll() is None, "the service stopped before its request reached the host"
        time.sleep(0.02)
    else:
        raise AssertionError("the request never reached the host")
    service.proc.kill()
    service.proc.wait()


@pytest.mark.pcscd
def test_a_void_reversed_by_the_recovery_after_a_kill_9_tells_the_operator_to_void_again(
        tmp_path: Path, host: HostSimulator) -> None:
    """Finding "kill -9 mid-void: nobody is told the void did not happen": the restart's recovery reversed the
    void (the charge stands, the books agree), and the operator, whose ``posguard op`` had lost its connection,
    was told nothing but ``reversals=1``."""
    config = write_config(tmp_path, host.port)
    config.write_text(config.read_text() + f'\n[supervisor]\nid = "S01"\ncredential = "{STORED}"\n')
    LOGS.clear()
    with vpcd_card("visa_credit_sig"):
        with stdin_service(config) as first:
            sale = first.ask("sale 1250")
            assert sale["ok"] and sale["rc"] == "00", sale
            host.add_fault("delay", delay=5.0, mti="0200", proc_prefix="02", times=1)
            _kill_9_once_the_host_has(first, f"void {sale['txn']} sup={SECRET}", host, "02")
        with stdin_service(config) as again:
            status = again.ask("status")
            voided = again.ask(f"void {sale['txn']} sup={SECRET}")  # what the operator does when told
        assert again.returncode == 0, again.err
    assert status["states"] == {sale["state"]: 1, "reversed": 1}, status
    [said] = _events(LOGS + again.out.splitlines(), "void.reversed_at_start")
    assert said["original"] == sale["txn"] and "do the void again" in str(said["msg"])
    assert voided["ok"] and voided["rc"] == "00" and voided["incidents"] == [], voided
    assert [e.status for e in host.ledger.find(kind="sale")] == ["voided"]


def test_the_sign_off_at_a_stop_waits_briefly_and_says_when_it_was_not_answered(
        tmp_path: Path, host: HostSimulator) -> None:
    """Finding "SIGTERM with the host silent": the stop's sign-off waited the whole host timeout (30 s by
    default) after a sale that had already waited the host timeout and its reversal's 15 s, past the unit's
    TimeoutStopSec=45 (systemd then SIGKILLs it mid-stop); and the log said ``signed off`` at info level for a
    sign-off nobody answered. Now it waits at most 5 s and an unanswered sign-off is a warning that says so."""
    config = write_config(tmp_path, host.port)
    config.write_text(config.read_text().replace('kind = "pcsc"', 'kind = "none"').replace("timeout = 5",
                                                                                          "timeout = 6"))
    LOGS.clear()
    with stdin_service(config) as service:
        assert service.ask("status")["ok"]
        host.add_fault("drop", mti="0800", times=0)  # the host goes silent; the stop comes
    assert service.returncode == 0, service.err
    logs = LOGS + service.out.splitlines()
    assert _events(logs, "service.signed_off") == []
    [said] = _events(logs, "service.sign_off_unanswered")
    assert said["level"] == "warning" and "no answer within 5 s" in str(said["msg"])
    [waited] = [e for e in _events(logs, "link.timeout") if e.get("mti") == "0800"]
    assert "within 5 s" in str(waited["msg"])  # not the host timeout of 6 s
    assert _events(logs, "service.stopped")


def test_a_flush_that_leaves_the_queue_says_what_waits_and_when(tmp_path: Path, host: HostSimulator) -> None:
    """Finding "flush says pending 1 and nothing else": with the host back after an outage, the operator's
    ``flush`` inside the reversal's back-off answered ``pending: 1`` -- not what waited, why, or when it would be
    tried again (a sale refused meanwhile said all three)."""
    config = write_config(tmp_path, host.port)
    config.write_text(config.read_text().replace('kind = "pcsc"', 'kind = "none"'))
    cfg, problems = load_config(config)
    assert problems == []
    svc = Service(cfg, EventLog())
    try:
        svc.start()
        svc.till.add_card("c1", CardData.from_pan(VISA_PAN, cfg.token_key, expiry="2512", scheme="visa"))
        host.add_fault("disconnect", mti="0200", times=1)  # the sale's answer is lost: its reversal is armed
        host.add_fault("disconnect", mti="0400", times=1)  # and the reversal's too: it is queued, backing off
        sale = svc.till.do("sale", card="c1", amount=12_50)
        assert sale is not None and sale.state == "reversal_pending", sale
        answer = svc.handle("flush")
        assert answer["ok"] and answer["pending"] == 1, answer
        waiting = answer["waiting"]
        assert waiting.startswith(f"0400 for {sale.txn_id}: 1 attempt(s), last LinkDropped: "), waiting
        assert "next try in" in waiting
    finally:
        svc.close()
