"""posguard's ISO 8583 codec: dialects as data, compiled per bitmap on ``construct``, safe by default.

>>> from posguard.iso8583 import Message, decode
>>> m = Message("0800", {"11": "000001", "41": "TERM0001", "70": "301"}, dialect="iso87ascii")
>>> decode(m.encode(), "iso87ascii")["70"]
'301'
"""

from posguard.iso8583.dialects import dialect_names, get_dialect, load_dialect_file, register_dialect
from posguard.iso8583.errors import DecodeError, EncodeError, Iso8583Error, SpecError, TLVError
from posguard.iso8583.framing import Framing, StreamDecoder, swap_tpdu
from posguard.iso8583.message import Message, Violation, decode, encode
from posguard.iso8583.spec import Composite, Dialect, FieldSpec, MessageRule, Subfield
from posguard.iso8583.tlv import TLV, build_tlv, find_tag, parse_tlv

__all__ = [
    "Message", "Violation", "decode", "encode",
    "Dialect", "FieldSpec", "Composite", "Subfield", "MessageRule",
    "get_dialect", "register_dialect", "dialect_names", "load_dialect_file",
    "DecodeError", "EncodeError", "Iso8583Error", "SpecError", "TLVError",
    "Framing", "StreamDecoder", "swap_tpdu",
    "TLV", "parse_tlv", "build_tlv", "find_tag",
]
