"""posguard: a terminal-side POS error handler."""

__version__ = "0.1.0"
