"""Compatibility name for :mod:`posguard.card`, where :class:`CardData` lives (kept for posguard.flows.base)."""

from posguard.card import SIGNATURE_CVM_CODES, CardData, is_signature_cvm

__all__ = ["CardData", "SIGNATURE_CVM_CODES", "is_signature_cvm"]
