"""What every command's exit status means, declared once: each command's ``--help`` epilog and the README's
table are read from :data:`EXITS` (a test checks both)."""

from __future__ import annotations

from typing import Final

__all__ = ["EXITS", "epilog", "markdown_table"]

_ARGS = "bad arguments (argparse says which)"

#: command (as typed after ``posguard``) -> exit status -> what it means
EXITS: Final[dict[str, dict[int, str]]] = {
    "iso8583 decode": {0: "every line decoded", 2: "a line could not be decoded (named on stderr, the other lines "
                       "still processed), an unknown dialect, or " + _ARGS},
    "iso8583 encode": {0: "every line encoded", 2: "a line could not be encoded (named on stderr, the other lines "
                       "still processed), an unknown dialect, or " + _ARGS},
    "iso8583 spec": {0: "printed", 2: "an unknown dialect, or " + _ARGS},
    "card read": {0: "the card was read (the masked result is printed)",
                  2: "the card failed the EMV session (declined offline, mute, a bad answer), or " + _ARGS,
                  3: "no reader, no card within --timeout, or the reader failed"},
    "readers": {0: "readers listed (or none found and nothing went wrong)", 2: _ARGS,
                3: "no reader found and a problem stopped the search (pcscd down, pyscard missing)"},
    "engine chart": {0: "printed", 2: _ARGS},
    "engine journal": {0: "the journal's integrity check is ok", 1: "the integrity check found problems",
                       2: "neither PATH nor --config, or " + _ARGS},
    "incidents": {0: "printed", 1: "the journal cannot be read (missing, damaged, newer schema) or no such "
                  "incident", 2: "show without an ID, or " + _ARGS},
    "report": {0: "printed", 1: "the journal cannot be read (missing, damaged, newer schema)",
               2: "a --since that is not YYYY-MM-DD, or " + _ARGS},
    "demo": {0: "the day ran and its incidents were detected and corrected", 1: "the day ran and found no incident",
             2: "the simulators are not installed or did not start, or " + _ARGS},
    "record": {0: "the capture was written", 2: _ARGS},
    "replay": {0: "the capture replayed", 1: "the capture cannot be read (the line is named)", 2: _ARGS},
    "capture import-pcap": {0: "the capture was written", 1: "the packet capture cannot be read or holds no "
                            "host link", 2: _ARGS},
    "run": {0: "a requested stop: quit, SIGTERM, SIGINT, or the end of stdin with --stdin",
            1: "any other stop (so that Restart=on-failure restarts it)",
            2: "configuration problems (all listed), a journal held by another service, or " + _ARGS},
    "op": {0: "every answer was ok", 1: "the service refused a command", 2: "the service cannot be reached, or "
           + _ARGS},
    "diagnose": {0: "every check ok (or skipped)", 1: "a warning", 2: "a failure, or " + _ARGS},
    "supervisor-hash": {0: "the scrypt line for supervisor.credential was printed",
                        2: "the credential read was empty (nothing printed), or " + _ARGS},
    "reconcile": {0: "the acquirer's report and the journal agree on every batch compared (its incident closed)",
                  1: "differences found: the list and the acquirer-contact step are printed, the incident stays "
                  "open (acquirer_contact_needed)",
                  2: "the report cannot be read (the line and column are named), or " + _ARGS,
                  3: "the configuration or the journal cannot be used (the running service holds it: send "
                  "`reconcile FILE` with `posguard op`), or no closed batch to compare"},
    "keygen": {0: "every key file written (0600)", 1: "a file could not be written (the path is named)",
               2: "refused: a key file exists (no --force), an unknown --owner, a directory others may write to, "
               "or " + _ARGS},
}


def epilog(command: str) -> str:
    """The ``--help`` epilog of ``command`` (use with ``RawDescriptionHelpFormatter``)."""
    return "exit status:\n" + "\n".join(f"  {code}  {text}" for code, text in sorted(EXITS[command].items()))


def markdown_table() -> str:
    """The README's table: one row per command."""
    rows = ["| command | 0 | 1 | 2 | 3 |", "| --- | --- | --- | --- | --- |"]
    for command, codes in EXITS.items():
        cells = [codes.get(code, "—") for code in range(4)]
        rows.append(f"| `posguard {command}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)
