"""``posguard iso8583 decode|encode|spec``: the codec on the command line.

Input: hex messages (decode) or JSON objects (encode), one per line, from arguments or standard input.
Bad input prints a one-line error naming the line, field and offset on standard error; the other lines are
still processed, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

from posguard.cli.exits import epilog
from posguard.iso8583 import Iso8583Error, Message, get_dialect
from posguard.iso8583.spec import Dialect

EXIT_BAD_INPUT = 2


def add_iso8583_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("iso8583", help="decode, encode and inspect ISO 8583 messages")
    s = p.add_subparsers(dest="iso_cmd", required=True)

    d = s.add_parser("decode", help="decode hex messages (one per line) to text or JSON lines",
                     epilog=epilog("iso8583 decode"), formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("messages", nargs="*", help="hex messages; standard input when none")
    d.add_argument("--dialect", "-d", default="iso87ascii",
                   help="iso87ascii, iso87, iso87bcd, cup, a .json/.toml file, or module:ATTR")
    d.add_argument("--json", action="store_true", help="one JSON object per line (pyiso8583-style keys)")
    d.add_argument("--reveal", action="store_true",
                   help="show card data (PAN, tracks, PIN block, ICC data, MAC) in clear")
    d.add_argument("--validate", action="store_true", help="also report rule violations per message")
    d.set_defaults(func=cmd_decode)

    e = s.add_parser("encode", help="encode JSON lines (pyiso8583-style dicts) to hex lines",
                     epilog=epilog("iso8583 encode"), formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("messages", nargs="*", help="JSON objects; standard input when none")
    e.add_argument("--dialect", "-d", default="iso87ascii")
    e.set_defaults(func=cmd_encode)

    sp = s.add_parser("spec", help="print a dialect's field table",
                      epilog=epilog("iso8583 spec"), formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("--dialect", "-d", default="iso87ascii")
    sp.add_argument("--json", action="store_true", help="the dialect as one JSON line (loadable as a dialect file)")
    sp.set_defaults(func=cmd_spec)


def _lines(args: list[str], stdin: TextIO) -> Iterator[tuple[int, str]]:
    source: Iterable[str] = args if args else stdin
    for n, line in enumerate(source, 1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield n, text


def _err(out: TextIO, line: int, e: Exception) -> None:
    print(f"line {line}: {e}", file=out)


class BadLine(Exception):
    """One input line could not be processed; the others still are."""


def _each_line(ns: argparse.Namespace, handle: Callable[[str, Dialect], str]) -> int:
    """Run ``handle`` on every input line; print its output, or a one-line error naming the line."""
    dialect = _dialect(ns.dialect, sys.stderr)
    if dialect is None:
        return EXIT_BAD_INPUT
    status = 0
    for n, text in _lines(ns.messages, sys.stdin):
        try:
            print(handle(text, dialect), file=sys.stdout)
        except (BadLine, Iso8583Error) as e:
            _err(sys.stderr, n, e)
            status = EXIT_BAD_INPUT
    return status


def cmd_decode(ns: argparse.Namespace) -> int:
    def handle(text: str, dialect: Dialect) -> str:
        try:
            raw = bytes.fromhex(text.replace(" ", ""))
        except ValueError:
            raise BadLine("not hex: messages are given as hex digits, one per line") from None
        msg = Message.decode(raw, dialect)
        violations = [str(v) for v in msg.validate()] if ns.validate else []
        if ns.json:
            doc: dict[str, object] = dict(msg.to_dict(reveal=ns.reveal))
            if ns.validate:
                doc["violations"] = violations
            return json.dumps(doc, ensure_ascii=False)
        return "\n".join([msg.describe(reveal=ns.reveal), *(f"  ! {v}" for v in violations), ""])

    return _each_line(ns, handle)


def cmd_encode(ns: argparse.Namespace) -> int:
    def handle(text: str, dialect: Dialect) -> str:
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise BadLine(f"not a JSON object: {e}") from None
        if not isinstance(doc, dict):
            raise BadLine("not a JSON object: expected {...}")
        return Message.from_dict(doc, dialect).encode().hex().upper()

    return _each_line(ns, handle)


def cmd_spec(ns: argparse.Namespace) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    dialect = _dialect(ns.dialect, stderr)
    if dialect is None:
        return EXIT_BAD_INPUT
    if ns.json:
        print(json.dumps(dialect.to_data(), ensure_ascii=False), file=stdout)  # one JSON line
        return 0
    print(format_spec(dialect), file=stdout)
    return 0


def format_spec(d: Dialect) -> str:
    lines = [
        f"dialect {d.name}: {d.desc}",
        f"  MTI {d.mti_enc}, bitmap {d.bitmap_enc}, header {d.header_len} bytes ({d.header_enc}), "
        f"framing {d.framing}, reversal link {d.reversal_link}",
    ]
    if d.source:
        lines.append(f"  source: {d.source}")
    lines.append("")
    lines.append(f"  {'field':>5}  {'format':<42} {'mask':<7} description")
    for k in sorted(d.fields, key=int):
        f = d.fields[k]
        lines.append(f"  {k:>5}  {f.format_name():<42} {f.sensitive or '':<7} {f.desc}")
        if f.composite is not None and f.composite.kind == "positional":
            for sf in f.composite.subfields:
                opt = " (optional)" if sf.optional else ""
                lines.append(f"  {'':>5}    .{sf.key:<4} {sf.kind}{'..' if sf.variable else ''}{sf.length:<31} {'':<7} {sf.desc}{opt}")
        elif f.composite is not None:
            lines.append(f"  {'':>5}    BER-TLV (EMV tags), addressable as {k}.TAG")
    if d.rules:
        lines.append("")
        lines.append("  message rules (fields each message type must carry):")
        for r in d.rules:
            match = ", ".join(f"{p}={v}…" for p, v in r.match)
            req = " ".join(r.required)
            one = "; one of " + " | ".join("/".join(g) for g in r.one_of) if r.one_of else ""
            forb = "; never " + " ".join(r.forbidden) if r.forbidden else ""
            lines.append(f"    {r.name:<22} {r.mti} {('[' + match + ']') if match else '':<22} {req}{one}{forb}")
    return "\n".join(lines)


def _dialect(name: str, stderr: TextIO) -> Dialect | None:
    try:
        return get_dialect(name)
    except Iso8583Error as e:
        print(f"posguard: {e}", file=stderr)
        return None
