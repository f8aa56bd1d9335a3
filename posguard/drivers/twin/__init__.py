"""GemPC Twin serial reader: CCID over a serial line, spoken directly (no pcscd).

Import from the submodules.
"""
