"""Codec throughput: posguard vs pyiso8583 on the same messages, measured in the same run.

Messages: a 0200 sale with 20 fields including field 55 (EMV data), and a 60-field message using the
secondary bitmap. Both dialects pyiso8583 ships a spec for (iso87 = specs.default, iso87ascii =
specs.default_ascii). Prints messages per second for both codecs and the ratio posguard / pyiso8583.

Two kinds of rows, each against pyiso8583 doing the same work in the same run:

* stored: re-encoding a built ``Message`` and ``Message.decode`` (vs ``iso8583.encode`` / ``iso8583.decode``);
* user: what callers do — a field dict to bytes (``Message.from_dict(doc).encode()`` with binary fields as
  hex text, and ``Message(mti, fields).encode()`` with them as bytes), and bytes to every field
  (``decode(raw).to_dict()``, masked as by default, and ``decode(raw)`` then ``msg[k]`` for each field),
  against ``iso8583.encode(doc)`` (dict in, bytes out) and ``iso8583.decode(raw)`` (the dict of all fields).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import iso8583
from iso8583 import specs
from paired import paired_rates  # benchmarks/paired.py, beside this script

from posguard.iso8583 import Message, decode

ICC = (
    "9F2608A1B2C3D4E5F60718" "9F2701809F100706010A03A0A8009F3704112233449F360200259505008004E000"
    "9A032611239C01009F02060000000012345F2A0201568202580084"
    "07A00000033301019F1A0201569F03060000000000009F3303E0F8C89F34031E03009F3501229F1E0831323334353637"
)


def sale_20() -> dict[str, str]:
    return {
        "t": "0200", "2": "4761739001010119", "3": "000000", "4": "000000012345", "7": "1123101530",
        "11": "000123", "12": "101530", "13": "1123", "14": "2812", "18": "5999", "22": "051",
        "23": "001", "25": "00", "32": "12345678901", "35": "4761739001010119=28122011000000000000", "37": "612345678901",
        "41": "TERM0001", "42": "MERCHANT0000001", "43": "POSGUARD TEST SHOP        SHANGHAI    CN",
        "49": "156", "55": ICC,
    }


def wide_60() -> dict[str, str]:
    doc = sale_20()
    numeric = {k: "0" * 10 for k in ("74", "75", "76", "77", "78", "79", "80", "81")}
    doc.update(numeric)
    doc.update({k: "0" * 12 for k in ("82", "83", "84", "85", "5", "6")})
    doc.update({k: "0" * 16 for k in ("86", "87", "88", "89")})
    doc.update({"8": "00000000", "9": "61000000", "10": "61000000", "15": "1123", "16": "1123", "17": "1123",
                "19": "156", "20": "156", "21": "156", "24": "001", "26": "12", "27": "6",
                "33": "12345678901", "38": "A1B2C3", "39": "00", "40": "201", "44": "ADDITIONAL RESP",
                "48": "PRIVATE DATA FOR THE ACQUIRER", "50": "156", "51": "156", "53": "0000000000000000",
                "62": "TERMINAL PARAMETERS", "63": "OPERATOR 01", "70": "301", "90": "0" * 42})
    return doc




def _read_all(raw: bytes, dialect: str) -> Callable[[], object]:
    def run() -> object:
        m = decode(raw, dialect)
        for k in m:
            m[k]
        return m
    return run


# (op, kind): kind "stored" re-encodes/decodes only; "user" is the whole user-level operation
OPS = (
    ("decode", "stored", "Message.decode(raw)"),
    ("encode", "stored", "msg.encode() of a built message"),
    ("dict->bytes", "user", "Message.from_dict(doc).encode()"),
    ("dict->bytes", "user", "Message(mti, fields).encode()"),
    ("bytes->all fields", "user", "decode(raw).to_dict()"),
    ("bytes->all fields", "user", "decode(raw) + msg[k] for each k"),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--repeat", type=int, default=5,
                    help="alternating slices per measurement (the best of each side counts)")
    ap.add_argument("--target", type=float, default=3.0, help="minimum ratio posguard/pyiso8583")
    ap.add_argument("--check", action="store_true", help="exit 1 when a ratio is under the target")
    ns = ap.parse_args(argv)
    rows = []
    for dialect, spec in (("iso87", specs.default), ("iso87ascii", specs.default_ascii)):
        for name, doc_fn in (("sale-20", sale_20), ("wide-60", wide_60)):
            doc = doc_fn()
            raw_py, _ = iso8583.encode(copy.deepcopy(doc), spec)
            raw_py = bytes(raw_py)
            msg = Message.from_dict(doc, dialect)
            raw_pg = msg.encode()
            assert raw_pg == raw_py, f"{dialect}/{name}: encodings differ"
            mti = doc["t"]
            fields = msg.fields()  # binary fields as bytes, as a caller of the constructor holds them
            assert Message(mti, fields, dialect=dialect).encode() == raw_py
            py_doc, _ = iso8583.decode(raw_py, spec)
            clear = {k: v for k, v in py_doc.items() if k not in ("p", "1")}
            assert decode(raw_pg, dialect).to_dict(reveal=True) == clear, f"{dialect}/{name}: decodings differ"
            nfields = len(doc) - 1
            py_enc = lambda: iso8583.encode(dict(doc), spec)  # noqa: E731,B023 (run at once)
            py_dec = lambda: iso8583.decode(raw_py, spec)  # noqa: E731,B023
            measure = (
                (lambda: Message.decode(raw_pg, dialect), py_dec),  # noqa: B023
                (msg.encode, py_enc),
                (lambda: Message.from_dict(doc, dialect).encode(), py_enc),  # noqa: B023
                (lambda: Message(mti, fields, dialect=dialect).encode(), py_enc),  # noqa: B023
                (lambda: decode(raw_pg, dialect).to_dict(), py_dec),  # noqa: B023
                (_read_all(raw_pg, dialect), py_dec),
            )
            label = f"{name} ({nfields} fields, {len(raw_pg)} B)"
            for (op, kind, how), (pg_fn, py_fn) in zip(OPS, measure, strict=True):
                pg, py = paired_rates(pg_fn, py_fn, ns.seconds, ns.repeat, batch=200)
                rows.append((dialect, label, op, how, kind, pg, py))
    print(f"{'dialect':<11} {'message':<28} {'op':<18} {'posguard call':<34} "
          f"{'posguard/s':>11} {'pyiso8583/s':>12} {'ratio':>6}")
    worst: dict[str, tuple[float, str]] = {}
    for dialect, name, op, how, kind, pg, py in rows:
        ratio = pg / py
        if kind not in worst or ratio < worst[kind][0]:
            worst[kind] = (ratio, f"{dialect} {name.split()[0]} {op}: {how}")
        print(f"{dialect:<11} {name:<28} {op:<18} {how:<34} {pg:>11,.0f} {py:>12,.0f} {ratio:>5.2f}x")
    lowest = min(r for r, _ in worst.values())
    for kind, (ratio, where) in sorted(worst.items(), reverse=True):
        print(f"lowest {kind}-level ratio {ratio:.2f}x ({where})")
    verdict = "meets" if lowest >= ns.target else "MISSES"
    print(f"SUMMARY: lowest ratio {lowest:.2f}x over all {len(rows)} rows — {verdict} the {ns.target:.1f}x target")
    if ns.check and lowest < ns.target:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
