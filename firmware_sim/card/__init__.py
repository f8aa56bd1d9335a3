"""EMV contact card simulator: profiles (data), applet, T=0 shaping, faults.

>>> from firmware_sim.card import Card
>>> card = Card("visa_credit_sig")
>>> card.power_on().hex().upper()
'3B680000504F534755415244'
>>> card.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100")).hex().upper()
'611C'
"""

from firmware_sim.card.card import Card, CardMute, CardPulled, Outcome
from firmware_sim.card.profiles import PROFILES, ProfileError, get_profile, profile_names

__all__ = ["PROFILES", "Card", "CardMute", "CardPulled", "Outcome", "ProfileError", "get_profile",
           "profile_names"]
