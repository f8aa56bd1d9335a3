"""The transaction engine: state chart, journal, store-and-forward, detectors, host-link port.

Import from the submodules (``posguard.engine.engine.TransactionEngine``, ``posguard.engine.journal.Journal``,
``posguard.engine.saf.StoreAndForward``, ``posguard.engine.detectors.Detectors``,
``posguard.engine.ports.HostLink``); this package module stays empty so importing the port is cheap.
"""
