"""Reader driver overhead and EMV session cost, each against a peer measured in the same run.

    .venv/bin/python benchmarks/bench_reader.py               # about 2 s of timed rounds per driver
    .venv/bin/python benchmarks/bench_reader.py --seconds 1   # shorter

Starts its own private pcscd (firmware_sim.rig) and simulated cards, and prints:

(a) PC/SC: one APDU round trip through ``PcscReader.transmit`` against a raw pyscard ``SCardTransmit``
    of the same APDU on the same card handle; interleaved rounds, median and best per APDU, ratio
    posguard/raw of the best rounds (target <= 1.10).
(b) Serial: ``TwinReader.transmit`` over the GemPC Twin firmware on a pty (no pcscd) against bare
    pyserial writes of the same CCID frames and reads of the same number of answer bytes on the same
    port object; interleaved, median/best, ratio.
(c) EMV: ``read_card`` per card profile through the PC/SC driver: APDU count and wall time, and the count
    checked against what the profile's directory and AFL require (SELECT PSE + PSE records + the
    6A83 that ends the directory + SELECT AID + GPO + AFL records + GENERATE AC): OK or MISMATCH.
(d) The EMV transaction (issue 11): reset + ``read_card`` + ``complete`` (first and second GENERATE AC) through
    the PC/SC driver, against the raw pyscard round trips of the same command sequence (the exact
    ``SCardTransmit`` commands one posguard transaction sent, GET RESPONSE included, after the same
    ``SCardReconnect`` reset) on the same card handle; interleaved, ratio posguard/raw of the best rounds
    (target <= 1.25).
Sections with 20 rounds or more also print the spread: the ratio of the 10th and 25th percentiles and the median of
the per-round ratios (the verdict stays on the best rounds).

Where (d)'s posguard time went (issue 11, profiled with cProfile, perf_counter probes between exchanges and a
replay of the recorded wire): the same 21 SCardTransmit, one SCardReconnect and one SCardStatus as the raw peer
(strace: the same system calls; each exchange takes as long on both sides); the rest is Python between the
exchanges. Warm (the wire replayed from memory) it was 530 us per transaction (1638 calls): TLV parsing about a
third, OpenSSL HMAC set-up for the PAN token, the GET RESPONSE chain, DOL/CVM-list parsing, field 55 via
build_tlv, per-command trace strings. Cut to ~210-240 us: a one-pass card-answer parser (checked parser on any
irregularity), records/GPO/GENERATE AC answers read flat when they are one template of distinct primitives, the
FCIs and PSE records read as tag -> first value (no object per data element), the AFL records parsed after the
last READ RECORD, DOL/CVM lists/configured AIDs/static terminal tags kept per process, keyed SHA-256 states per
token key, the session built in one step, lazy trace and reversal field 55. Every command, check, CVM decision,
mask and token is unchanged.
The machine decides how much the run adds to that Python. On the machine of those figures it cost 3-6x its warm
time in the run (about 1.1-1.2 ms per transaction on one CPU): pcscd and the card simulator run between every two
exchanges and the process wakes with cold caches, so each of the ~22 stretches of Python between exchanges pays a
fixed cost (the same system calls on both sides, no page faults); the ratio sat at the target (one CPU, every
quantile of ~200 rounds: 1.20-1.28; two CPUs, per-round median 1.22-1.24). On a 2-core AMD EPYC (2026-12-01) the
same code ran ~112 us warm and ~200 us in the run (probes between exchanges, one CPU; the largest stretches: before
the first GENERATE AC ~38 us, between the two ~32 us), and (d) gave best 1.05-1.14, per-round median 1.08-1.11
in seven runs across two CPUs, 1.15-1.22 best and 1.15-1.16 median on one.

pcscd and the simulators are stopped on exit, Ctrl-C and SIGTERM included. Exit status 1 on a MISMATCH.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_sim.card import get_profile  # noqa: E402
from firmware_sim.card.profiles import afl  # noqa: E402
from firmware_sim.rig.pcscd import VPCD_READER, process_socket_path, shutdown_rig  # noqa: E402
from firmware_sim.rig.sims import SimProcess, vpcd_card  # noqa: E402
from posguard.drivers.pcsc import PcscReader  # noqa: E402
from posguard.drivers.twin.frames import CCID_HEADER, PC_TO_RDR_XFR_BLOCK, encode_frame  # noqa: E402
from posguard.drivers.twin.reader import TwinReader  # noqa: E402
from posguard.emv import read_card  # noqa: E402
from posguard.emv.terminal import EmvTerminal, Transaction  # noqa: E402

SELECT_PSE = bytes.fromhex("00A404000E315041592E5359532E444446303100")
PROFILES = ("visa_credit_sig", "unionpay_debit_pin", "mastercard_nocvm")
# T=1-style card (no 61xx/GET RESPONSE): one APDU is exactly one transport exchange for both drivers.
OVERHEAD_PROFILE = "mastercard_nocvm"
TXN = Transaction(amount=12345, when=datetime(2026, 5, 1, 10, 30, 0), unpredictable_number=bytes.fromhex("CAFEBABE"))
CFG = EmvTerminal(pan_token_key=bytes(range(32)))


def _interleaved(loops: dict[str, Callable[[int], None]], per_round: int, seconds: float,
                 min_rounds: int = 5, max_rounds: int = 200,
                 cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Per-APDU seconds of each round of each loop, the loops alternating within every round. With ``cpu``,
    also this thread's CPU seconds per APDU of each round (``time.thread_time``: not the time spent waiting)."""
    rounds: dict[str, list[float]] = {name: [] for name in loops}
    if cpu is not None:
        cpu.update({name: [] for name in loops})
    start = time.perf_counter()
    n = 0
    while n < min_rounds or (time.perf_counter() - start < seconds and n < max_rounds):
        order = list(loops.items()) if n % 2 == 0 else list(reversed(loops.items()))
        for name, loop in order:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            loop(per_round)
            rounds[name].append((time.perf_counter() - t0) / per_round)
            if cpu is not None:
                cpu[name].append((time.thread_time() - c0) / per_round)
        n += 1
    return rounds


def _report(title: str, rounds: dict[str, list[float]], peer: str, ours: str, target: float | None) -> None:
    n = len(rounds[peer])
    print(f"{title} ({n} interleaved rounds)")
    for name in (peer, ours):
        r = rounds[name]
        print(f"  {name:<28} median {statistics.median(r) * 1e6:9.1f} us   best {min(r) * 1e6:9.1f} us")
    ratio_best = min(rounds[ours]) / min(rounds[peer])
    ratio_med = statistics.median(rounds[ours]) / statistics.median(rounds[peer])
    verdict = ""
    if target is not None:
        verdict = f"  (target <= {target:.2f}: {'OK' if ratio_best <= target else 'OVER'})"
    print(f"  ratio {ours}/{peer}: best {ratio_best:.3f}, median {ratio_med:.3f}{verdict}")
    if n >= 20:  # the spread: the rig has slow phases that hit both sides, and "best" is one lucky round each
        q = statistics.quantiles
        p10 = q(rounds[ours], n=10)[0] / q(rounds[peer], n=10)[0]
        p25 = q(rounds[ours], n=4)[0] / q(rounds[peer], n=4)[0]
        paired = statistics.median(o / r for o, r in zip(rounds[ours], rounds[peer], strict=True))
        print(f"  spread: 10th percentiles {p10:.3f}, 25th {p25:.3f}, median of the per-round ratios {paired:.3f}")


# -- (a) PC/SC ------------------------------------------------------------------------------------------
def bench_pcsc(seconds: float) -> None:
    from smartcard.scard import _scard

    with vpcd_card(OVERHEAD_PROFILE), contextlib.closing(PcscReader(VPCD_READER, apdu_timeout=2.0)) as r:
        r.wait_for_card(5)
        r.power_on()
        hcard, pci, apdu_list = r._hcard, r._pci, list(SELECT_PSE)
        first = r.transmit(SELECT_PSE)
        hr, raw = _scard.SCardTransmit(hcard, pci, apdu_list)
        if not first.ok or hr != 0 or bytes(raw) != first.data + b"\x90\x00":
            raise SystemExit(f"PC/SC: posguard and raw answers differ or fail (SW {first.sw:04X}, hr {hr:#x})")

        def raw_loop(n: int) -> None:
            for _ in range(n):
                _scard.SCardTransmit(hcard, pci, apdu_list)

        def ours_loop(n: int) -> None:
            for _ in range(n):
                r.transmit(SELECT_PSE)

        rounds = _interleaved({"raw SCardTransmit": raw_loop, "PcscReader.transmit": ours_loop}, 100, seconds)
    _report(f"(a) PC/SC APDU round trip, SELECT PSE on {OVERHEAD_PROFILE} via vpcd",
            rounds, "raw SCardTransmit", "PcscReader.transmit", 1.10)


# -- (b) serial Twin --------------------------------------------------------------------------------------
@contextlib.contextmanager
def twin_on_pty(profile: str) -> Iterator[Path]:
    """The Twin firmware simulator alone on a pty (pcscd does not hold the port)."""
    with tempfile.TemporaryDirectory(prefix="posguard-bench-twin-") as tmp:
        link = Path(tmp) / "ttyTwin"
        sim = SimProcess("twin_reader", ["--link", str(link), "--profile", profile, "--seed", "0"])
        try:
            sim.start()
            yield link
        finally:
            sim.stop()


def bench_twin(seconds: float) -> None:
    with twin_on_pty(OVERHEAD_PROFILE) as link, contextlib.closing(TwinReader(str(link), timeout=1.0)) as r:
        r.wait_for_card(5)
        r.power_on()
        port = r.link.port
        if r._t0:
            raise SystemExit("serial: expected a T=1 card for a one-exchange APDU")
        counters = r.counters
        # One transmit through the driver, to learn the answer and how many bytes the line carries back
        # for one XfrBlock (the reader's echo of our frame + its answer frame).
        before = port.in_waiting
        answer = r.transmit(SELECT_PSE)
        if not answer.ok or before:
            raise SystemExit(f"serial: SELECT PSE failed (SW {answer.sw:04X}) or the line was not idle")

        def frame(seq: int) -> bytes:
            ccid = (bytes((PC_TO_RDR_XFR_BLOCK,)) + len(SELECT_PSE).to_bytes(4, "little") + bytes((0, seq))
                    + b"\x00\x00\x00" + SELECT_PSE)
            return encode_frame(ccid)

        frames = [frame(seq) for seq in range(256)]
        answer_len = len(encode_frame(b"\x80" + b"\x00" * (CCID_HEADER - 1) + answer.data + b"\x90\x00"))
        reply_len = answer_len + (len(frames[0]) if r.link.echo else 0)
        # check that the bare loop reads exactly one answer: the data bytes must match the driver's
        seq = r._seq
        port.write(frames[seq])
        got = _read_exactly(port, reply_len)
        r._seq = (seq + 1) & 0xFF
        if got[-answer_len:][2 + CCID_HEADER:-1] != answer.data + b"\x90\x00" or port.in_waiting:
            raise SystemExit("serial: the bare pyserial exchange did not read the same answer")

        def raw_loop(n: int) -> None:
            seq = r._seq
            for _ in range(n):
                port.write(frames[seq])
                _read_exactly(port, reply_len)
                seq = (seq + 1) & 0xFF
            r._seq = seq  # the driver continues the sequence numbers the bare loop used

        def ours_loop(n: int) -> None:
            for _ in range(n):
                r.transmit(SELECT_PSE)

        rounds = _interleaved({"bare pyserial write/read": raw_loop, "TwinReader.transmit": ours_loop}, 50,
                              seconds)
        snap = counters.snapshot()
    _report(f"(b) serial APDU round trip, GemPC Twin firmware on a pty, SELECT PSE on {OVERHEAD_PROFILE}",
            rounds, "bare pyserial write/read", "TwinReader.transmit", None)
    print(f"  driver counters: retransmissions {snap.get('retransmissions', 0)}, naks_sent {snap.get('naks_sent', 0)}, "
          f"timeouts {snap.get('timeouts', 0)}, broken_frames {snap.get('broken_frames', 0)}")


def _read_exactly(port: object, n: int) -> bytes:
    read = port.read  # type: ignore[attr-defined]
    buf = b""
    deadline = time.monotonic() + 2.0
    while len(buf) < n:
        buf += read(n - len(buf))
        if time.monotonic() > deadline:
            raise SystemExit(f"serial: bare read got {len(buf)} of {n} bytes in 2 s")
    return buf


# -- (c) EMV ----------------------------------------------------------------------------------------------
def expected_apdus(profile_name: str) -> tuple[int, str]:
    """APDUs the profile's directory and AFL require, and the arithmetic as text."""
    p = get_profile(profile_name)
    directory = len(p["applications"])
    locator = afl(p)
    records = sum(locator[i + 2] - locator[i + 1] + 1 for i in range(0, len(locator), 4))
    total = 1 + directory + 1 + 1 + 1 + records + 1
    return total, (f"SELECT PSE 1 + PSE records {directory} + end 6A83 1 + SELECT AID 1 + GPO 1 "
                   f"+ AFL records {records} + GENERATE AC 1")


def bench_emv(seconds: float) -> bool:
    ok = True
    print("(c) EMV read_card through PcscReader (vpcd), per profile")
    with vpcd_card(PROFILES[0]) as card, contextlib.closing(PcscReader(VPCD_READER, apdu_timeout=2.0)) as r:
        for i, name in enumerate(PROFILES):
            if i:
                card.swap(name)
            r.wait_for_card(5)
            read_card(r, CFG, TXN)  # warm-up: first connect
            times: list[float] = []
            counts: set[int] = set()
            start = time.perf_counter()
            while len(times) < 5 or (time.perf_counter() - start < seconds / len(PROFILES) and len(times) < 200):
                t0 = time.perf_counter()
                s = read_card(r, CFG, TXN)
                times.append(time.perf_counter() - t0)
                counts.add(s.apdu_count)
            want, why = expected_apdus(name)
            got = counts.pop() if len(counts) == 1 else -1
            verdict = "OK" if got == want else "MISMATCH"
            ok = ok and got == want
            per_apdu = statistics.median(times) / max(got, 1)
            print(f"  {name:<20} APDUs {got if got >= 0 else sorted(counts)} (expected {want}: {why}) {verdict}")
            print(f"  {'':<20} wall median {statistics.median(times) * 1e3:7.2f} ms   best {min(times) * 1e3:7.2f} ms"
                  f"   ({per_apdu * 1e6:.0f} us/APDU, {len(times)} reads, cvm {s.cvm_required})")
    return ok


# -- (d) the EMV transaction ------------------------------------------------------------------------------
#: (d) discards this many transactions of each side before timing (first calls, caches, the card simulator).
TXN_WARM_UP = 10
#: (d) transactions per timed round: short rounds, so that "best" has many rounds to come from under load.
TXN_PER_ROUND = 2


def bench_emv_transaction(seconds: float) -> None:
    from smartcard.scard import _scard

    import posguard.drivers.pcsc as pcsc_driver
    from posguard.emv import complete

    name = "unionpay_debit_pin" if "unionpay_debit_pin" in PROFILES else PROFILES[0]
    with vpcd_card(name), contextlib.closing(PcscReader(VPCD_READER, apdu_timeout=2.0)) as r:
        r.wait_for_card(5)
        r.power_on()

        def transaction() -> None:
            session = read_card(r, CFG, TXN)  # powers the card on (a reset of the connected card)
            complete(r, session, host_approved=True, response_code="00")

        # record the exact commands one transaction puts on the wire (GET RESPONSE included), and the answers
        sent: list[list[int]] = []
        answers: list[object] = []
        real = pcsc_driver._transmit

        def recording(hcard: int, pci: object, apdu: list[int]) -> object:
            sent.append(list(apdu))
            answer = real(hcard, pci, apdu)
            answers.append(answer)
            return answer

        pcsc_driver._transmit = recording  # type: ignore[assignment]
        try:
            transaction()
        finally:
            pcsc_driver._transmit = real
        hcard, share, pci = r._hcard, r._share, r._pci
        protocols = _scard.SCARD_PROTOCOL_T0 | _scard.SCARD_PROTOCOL_T1

        def raw_transaction() -> None:
            hr, _ = _scard.SCardReconnect(hcard, share, protocols, _scard.SCARD_RESET_CARD)
            if hr != 0:
                raise SystemExit(f"raw reconnect failed: {hr:#x}")
            _scard.SCardStatus(hcard)  # the driver reads the ATR after a reset; so does the peer
            for apdu in sent:
                hr, _answer = _scard.SCardTransmit(hcard, pci, apdu)
                if hr != 0:
                    raise SystemExit(f"raw transmit failed: {hr:#x}")

        def raw_loop(n: int) -> None:
            for _ in range(n):
                raw_transaction()

        def ours_loop(n: int) -> None:
            for _ in range(n):
                transaction()

        for _ in range(TXN_WARM_UP):
            transaction()
            raw_transaction()
        cpu: dict[str, list[float]] = {}
        rounds = _interleaved({"raw pyscard sequence": raw_loop, "read_card + complete": ours_loop}, TXN_PER_ROUND,
                              seconds, min_rounds=10, max_rounds=1000, cpu=cpu)
        replayed = _replayed_python(transaction, sent, answers, _scard, hcard, r.protocol == "T=0")
    _report(f"(d) EMV transaction on {name} via vpcd: reset, {len(sent)} APDUs (GENERATE AC twice)",
            rounds, "raw pyscard sequence", "read_card + complete", 1.25)
    raw_cpu, ours_cpu = statistics.median(cpu["raw pyscard sequence"]), statistics.median(cpu["read_card + complete"])
    print(f"  CPU of this thread per transaction (median): raw {raw_cpu * 1e6:.0f} us (libpcsclite and the kernel),"
          f" posguard {ours_cpu * 1e6:.0f} us: {(ours_cpu - raw_cpu) * 1e6:.0f} us more")
    print(f"  posguard's own Python per transaction, the wire replayed from memory (no I/O, caches warm): "
          f"median {statistics.median(replayed) * 1e6:.0f} us, best {min(replayed) * 1e6:.0f} us")


def _replayed_python(transaction: Callable[[], None], sent: list[list[int]], answers: list[object],
                     scard: object, hcard: int, t0_card: bool, count: int = 300) -> list[float]:
    """Seconds per transaction with every PC/SC call answered from the recording (the same commands are
    checked, in order): what posguard's Python costs without the round trips, whatever the machine's load."""
    import posguard.drivers.pcsc as pcsc_driver

    position = 0

    def replay(hcard: int, pci: object, apdu: list[int]) -> object:
        nonlocal position
        if apdu != sent[position]:
            raise SystemExit(f"replay: command {position} differs from the recorded transaction")
        position += 1
        return answers[position - 1]

    real = (pcsc_driver._transmit, scard.SCardReconnect, scard.SCardStatus)  # type: ignore[attr-defined]
    status = real[2](hcard)  # this card's status (ATR) as the driver reads it after a reset
    reconnected = (0, scard.SCARD_PROTOCOL_T0 if t0_card else scard.SCARD_PROTOCOL_T1)  # type: ignore[attr-defined]
    pcsc_driver._transmit = replay  # type: ignore[assignment]
    scard.SCardReconnect = lambda *_: reconnected  # type: ignore[attr-defined]
    scard.SCardStatus = lambda _h: status  # type: ignore[attr-defined]
    times: list[float] = []
    try:
        for i in range(count + 20):
            position = 0
            started = time.perf_counter()
            transaction()
            if i >= 20:
                times.append(time.perf_counter() - started)
            if position != len(sent):
                raise SystemExit(f"replay: {position} of {len(sent)} recorded commands sent")
    finally:
        pcsc_driver._transmit, scard.SCardReconnect, scard.SCardStatus = real  # type: ignore[attr-defined]
    return times


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed budget per section (default 2)")
    args, unknown = ap.parse_known_args(argv)
    if unknown:
        print(f"(ignoring arguments {unknown})")
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (a background job); SIGTERM
    # and SIGHUP do the same, so the finally below always stops pcscd and the simulators.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        bench_pcsc(args.seconds)
        bench_twin(args.seconds)
        ok = bench_emv(args.seconds)
        bench_emv_transaction(args.seconds)
    except KeyboardInterrupt:
        print("interrupted: stopping pcscd and simulators", file=sys.stderr)
        return 130
    finally:
        shutdown_rig()
        with contextlib.suppress(OSError):  # the rig's per-process socket directory, now empty
            process_socket_path().parent.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
