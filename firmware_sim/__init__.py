"""Simulated devices that speak real wire protocols: the "other side" of posguard.

Nothing here imports :mod:`posguard`. Each program runs as ``python -m firmware_sim.<name>``:

- :mod:`firmware_sim.card` -- EMV contact card applet and its profiles (pure Python, APDU in/out).
- :mod:`firmware_sim.vpcd_bridge` -- runs a card as a client of vsmartcard-vpcd inside pcscd.
- :mod:`firmware_sim.twin_reader` -- GemPC Twin serial reader firmware (CCID over serial) on a pty.
- :mod:`firmware_sim.magstripe` -- serial magnetic stripe reader on a pty.

Every program reads one command per line on stdin and answers ``ok <json>`` or ``err <text>``
on stdout (see :mod:`firmware_sim.control`); faults are declared with :mod:`firmware_sim.faults`.

:mod:`firmware_sim.rig` is the one launcher that runs these programs (and a private pcscd) for the tests, the
benchmarks and ``posguard demo``. This package is its own distribution, ``posguard-firmware-sim``
(``firmware_sim/pyproject.toml``; ``scripts/setup.sh`` installs it editable into the development venv), not
part of the posguard wheel; posguard's demo finds :class:`firmware_sim.rig.Rig` through the
``posguard.simulators`` entry point instead of importing it.
"""
