"""``posguard demo``: a scripted trading day through the real stack against the simulators.

reader (pcscd + vpcd card, or the serial GemPC Twin) -> EMV card session -> transaction engine -> TCP host link
-> acquirer host simulator (a subprocess). A serial magstripe reader (on a pty) swipes the day's stripe card.
Normal sales, then each error kind; what was detected and what was done is printed as it happens, then the
day's incident report. Every simulator is stopped on the way out.

With ``record``, the capture also holds the raw reader frames (``frame`` records) when the reader is the
serial Twin, and every swipe (``swipe`` records), sanitised like everything else.
"""

from posguard.demo.run import DEMO_TERMINAL, DemoResult, demo_policies, run_demo

__all__ = ["DemoResult", "run_demo", "DEMO_TERMINAL", "demo_policies"]
