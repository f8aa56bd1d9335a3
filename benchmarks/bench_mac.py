"""MAC of a 0200 (``posguard.engine.mac``, every algorithm) against a bare TDES-CBC of the same bytes with
``cryptography``, measured in the same run (issue 12: target <= 1.3x the peer's time).

    .venv/bin/python benchmarks/bench_mac.py [--seconds 2] [--repeat 20] [--check]

The message: a CUP and an ISO (iso87ascii) 0200 sale built by posguard's own profile, with field 55, encoded;
the MAC input is what the host link MACs (MTI through the last field before 64, the CUP TPDU/header left out).
The peer: ``Cipher(TripleDES(K1|K2|K1), CBC(zero IV)).encryptor()``, ``update`` + ``finalize`` over the same
bytes zero-padded — the least work any TDES MAC of these bytes can do. Each row prints both rates (MACs per
second) and the cost ratio posguard / peer (time per MAC; lower is better).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES  # noqa: E402
from cryptography.hazmat.primitives.ciphers import Cipher, modes  # noqa: E402
from paired import paired_rates  # noqa: E402 - benchmarks/paired.py, beside this script

from posguard.card import CardData  # noqa: E402
from posguard.engine.mac import ALGORITHMS, MacKey, MacScheme  # noqa: E402
from posguard.engine.profiles import get_profile  # noqa: E402
from posguard.iso8583.tlv import build_tlv  # noqa: E402

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def mac_input(dialect: str) -> bytes:
    """The bytes the host link MACs for a 0200 sale of ``dialect`` (field 64 left out)."""
    profile = get_profile(dialect)
    icc = build_tlv([("9F26", bytes.fromhex("A1B2C3D4E5F60718")), ("9F27", b"\x80"), ("9F34", b"\x1e\x03\x00"),
                     ("9F36", b"\x00\x01"), ("95", bytes(5)), ("9F10", bytes.fromhex("0110A00003220000")),
                     ("9F02", bytes.fromhex("000000012345")), ("5F2A", b"\x01\x56"), ("9A", b"\x26\x11\x30")])
    card = CardData.from_pan("6228480402564890018", b"T" * 32, expiry="2812", field55=icc, entry_mode="chip",
                             scheme="unionpay")
    fields = profile.request_fields("sale", card=card, amount_minor=12_345, currency="156", stan=123, batch_no=1,
                                    terminal_id="TERM0001", merchant_id="MERCHANT0000001", now=1_764_480_000.0)
    raw = profile.message("0200", fields).encode()
    return raw[profile.dialect.header_len:]


def peer_cbc(key: bytes, data: bytes) -> bytes:
    k = key + key[:8]
    padded = data + bytes(-len(data) % 8)
    enc = Cipher(TripleDES(k), modes.CBC(bytes(8))).encryptor()
    return (enc.update(padded) + enc.finalize())[-8:]




def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--repeat", type=int, default=20, help="alternating slices per measurement (best one counts)")
    ap.add_argument("--target", type=float, default=1.3, help="the largest cost ratio posguard / peer")
    ap.add_argument("--check", action="store_true", help="exit 1 when a ratio is over the target")
    ns = ap.parse_args(argv)
    rows: list[tuple[str, str, int, float, float, float]] = []
    print(f"{'dialect':<11} {'algorithm':<9} {'bytes':>5} {'posguard MAC/s':>15} {'TDES-CBC/s':>12} {'cost ratio':>10}")
    for dialect in ("cup", "iso87ascii"):
        data = mac_input(dialect)
        for algorithm in ALGORITHMS:
            scheme = MacScheme(algorithm, MacKey(KEY))
            ours, peer = paired_rates(lambda s=scheme, d=data: s.compute(d), lambda d=data: peer_cbc(KEY, d),
                               ns.seconds, ns.repeat)
            ratio = peer / ours
            rows.append((dialect, algorithm, len(data), ours, peer, ratio))
            print(f"{dialect:<11} {algorithm:<9} {len(data):>5} {ours:>15,.0f} {peer:>12,.0f} {ratio:>9.2f}x")
    worst = max(rows, key=lambda r: r[5])
    verdict = "within" if worst[5] <= ns.target else "OVER"
    print(f"SUMMARY: highest cost ratio {worst[5]:.2f}x ({worst[0]} {worst[1]}) — {verdict} the {ns.target:.1f}x "
          "target")
    return 1 if ns.check and worst[5] > ns.target else 0


if __name__ == "__main__":
    sys.exit(main())
