"""Names of the EMV tags a terminal meets in field 55, and which are safe to print.

Only tags in :data:`DISPLAY_SAFE` are shown in clear by ``describe()``; everything else in field 55
(track-2 equivalent 57, PAN 5A, cardholder name 5F20, issuer data, unknown tags) is masked by default.
"""

from __future__ import annotations

TAG_NAMES: dict[str, str] = {
    "4F": "Application Identifier (card)",
    "50": "Application Label",
    "57": "Track 2 Equivalent Data",
    "5A": "Application PAN",
    "5F20": "Cardholder Name",
    "5F24": "Application Expiration Date",
    "5F2A": "Transaction Currency Code",
    "5F34": "PAN Sequence Number",
    "82": "Application Interchange Profile",
    "84": "Dedicated File Name",
    "8A": "Authorisation Response Code",
    "91": "Issuer Authentication Data",
    "95": "Terminal Verification Results",
    "9A": "Transaction Date",
    "9B": "Transaction Status Information",
    "9C": "Transaction Type",
    "9F02": "Amount, Authorised",
    "9F03": "Amount, Other",
    "9F09": "Application Version Number (terminal)",
    "9F10": "Issuer Application Data",
    "9F1A": "Terminal Country Code",
    "9F1E": "Interface Device Serial Number",
    "9F26": "Application Cryptogram",
    "9F27": "Cryptogram Information Data",
    "9F33": "Terminal Capabilities",
    "9F34": "CVM Results",
    "9F35": "Terminal Type",
    "9F36": "Application Transaction Counter",
    "9F37": "Unpredictable Number",
    "9F41": "Transaction Sequence Counter",
    "9F53": "Transaction Category Code",
    "9F63": "Card Product Identification",
    "9F6B": "Track 2 Data (contactless)",
    "9F6C": "Card Transaction Qualifiers",
    "DF31": "Issuer Script Results",
    "71": "Issuer Script Template 1",
    "72": "Issuer Script Template 2",
}

#: tags whose values carry no cardholder data and may be printed in clear
DISPLAY_SAFE: frozenset[str] = frozenset({
    "4F", "50", "5F2A", "82", "84", "8A", "95", "9A", "9B", "9C", "9F02", "9F03", "9F09", "9F1A",
    "9F1E", "9F27", "9F33", "9F34", "9F35", "9F36", "9F41", "9F53", "9F6C", "DF31",
})


def tag_name(tag: str) -> str:
    return TAG_NAMES.get(tag.upper(), "unknown tag")
