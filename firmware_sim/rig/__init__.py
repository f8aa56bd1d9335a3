"""The simulators' launcher: a private pcscd, the simulator programs as subprocesses, the demo's rig."""
