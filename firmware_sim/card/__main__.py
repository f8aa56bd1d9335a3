"""``python -m firmware_sim.card``: list and print profiles, or run APDUs against a card offline.

    python -m firmware_sim.card list
    python -m firmware_sim.card show visa_credit_sig
    python -m firmware_sim.card apdu unionpay_debit_pin 00A404000E315041592E5359532E4444463031 00C000001C

To put a card into pcscd, use ``python -m firmware_sim.vpcd_bridge``.
"""

from __future__ import annotations

import argparse
import sys

from firmware_sim.card import Card, profiles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim.card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="profile names and descriptions")
    show = sub.add_parser("show", help="print a profile as JSON")
    show.add_argument("profile")
    run = sub.add_parser("apdu", help="power on a card and send APDUs (hex)")
    run.add_argument("profile")
    run.add_argument("apdus", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "list":
            for name in profiles.profile_names():
                print(f"{name:22} {profiles.PROFILES[name]['description']}")
        elif args.cmd == "show":
            print(profiles.describe(profiles.get_profile(args.profile)))
        else:
            card = Card(args.profile)
            print(f"ATR {card.power_on().hex().upper()}")
            for hex_apdu in args.apdus:
                response = card.transmit(bytes.fromhex(hex_apdu))
                print(f"> {hex_apdu.upper()}\n< {response.hex().upper()}")
    except (ValueError, profiles.ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
