"""``posguard diagnose``: checks for field technicians, each with a verdict, the measured figure and what to do.

Checks (run in this order; ``--check NAME`` picks some):

=========  ==========================================================================================
config     the configuration file as ``posguard run`` reads it, key files included (read as this user):
           every problem the service would refuse to start on
pcsc       pcscd answers, readers listed, card present, ATR and protocol, APDU round-trip latency
serial     the serial reader's port opens, the GemPC Twin answers, its firmware, link counters over a soak
card       a full EMV read (selection to GENERATE AC): APDU count and time
host       TCP connect and an echo round trip (ISO 0800, CUP 0820)
journal    read-only (never created, migrated or locked): SQLite integrity check, pending reversals/advices,
           transactions of unknown outcome, age of the open batch, the service holding it (pid)
clock      drift between this machine and the host's time in the echo answer (field 7 GMT, or 12/13 in
           terminal.timezone)
=========  ==========================================================================================

The reader checks follow the configuration's ``reader.kind`` (``twin``: the serial check, no PC/SC check;
``pcsc``: the PC/SC check, no serial check; ``none``: neither, nor the card check). When the running service
answers on its operator socket, it holds the reader: diagnose asks it (``status``) instead of opening the
reader, and reports the reader as the service sees it (``open``, or ``waiting for ... since ...``).

Every check ends within ``check_deadline`` seconds (a driver blocked under it is left behind and the check fails
saying what is stuck); the card check is not run on a reader its own check (pcsc or serial) just failed.

Verdicts: ``ok``, ``warn``, ``fail`` (``skip`` when the check has nothing configured). Exit status: 0 when all
are ok or skipped, 1 with a warning, 2 with a failure.
"""

from posguard.diagnose.checks import CHECKS, DiagnoseConfig, run_checks
from posguard.diagnose.report import VERDICTS, CheckResult, exit_status

__all__ = ["CHECKS", "CheckResult", "DiagnoseConfig", "run_checks", "exit_status", "VERDICTS"]
