"""Application selection (EMV Book 1 section 12): PSE directory first, list of AIDs as fallback;
the highest priority (tag 87, 1 = highest, 0 = none) candidate wins."""

from __future__ import annotations

from dataclasses import dataclass

from posguard.emv import apdu
from posguard.emv.channel import CardChannel, find_card_tag, parse_card_tlv
from posguard.emv.errors import CardDataError, CardStatusError, NoSupportedApplication
from posguard.emv.terminal import AidConfig, EmvTerminal
from posguard.iso8583.tlv import TLV

MAX_PSE_RECORDS = 32
MAX_NEXT_OCCURRENCES = 8
SW_OK = 0x9000
SW_APP_BLOCKED = 0x6283
SW_RECORD_NOT_FOUND = 0x6A83
SW_CARD_BLOCKED = 0x6A81


@dataclass(frozen=True)
class Candidate:
    aid: bytes
    label: str
    priority: int  # 1..15; 0 = no priority (sorted last)
    config: AidConfig
    order: int

    def sort_key(self) -> tuple[bool, int, int]:
        return (self.priority == 0, self.priority, self.order)


@dataclass(frozen=True)
class SelectedApp:
    aid: bytes  # DF name (84) from the FCI
    label: str
    priority: int
    config: AidConfig
    fci: list[TLV]

    @property
    def pdol(self) -> bytes | None:
        t = find_card_tag(self.fci, "9F38")
        return t.value if t else None


def _label(entry: list[TLV]) -> str:
    for tag in ("9F12", "50"):
        t = find_card_tag(entry, tag)
        if t is not None:
            return t.value.decode("ascii", "replace").strip()
    return ""


def _priority(entry: list[TLV]) -> int:
    t = find_card_tag(entry, "87")
    return t.value[0] & 0x0F if t is not None and t.value else 0


class Selector:
    """Builds the candidate list once; ``next_app`` selects the best remaining candidate (again after a GPO
    refusal with 6985)."""

    def __init__(self, channel: CardChannel, cfg: EmvTerminal) -> None:
        self.ch = channel
        self.cfg = cfg
        self.method = ""
        self.candidates: list[Candidate] = []
        self._current: bytes | None = None  # DF name of the application selected on the card right now
        self._current_fci: list[TLV] = []

    # -- candidate list --------------------------------------------------------------------------------
    def build(self) -> None:
        self.candidates = self._from_pse()
        self.method = "PSE"
        if not self.candidates:
            self.method = "AID list"
            self.candidates = self._from_aid_list()
        if not self.candidates:
            raise NoSupportedApplication("no application on the card matches the terminal's AIDs",
                                         stage="application selection")

    def _from_pse(self) -> list[Candidate]:
        r = self.ch.send(apdu.select(apdu.PSE_NAME), "SELECT PSE")
        if r.sw == SW_CARD_BLOCKED:
            raise CardStatusError(r.sw, stage="SELECT PSE", hint="the card is blocked: ask for another card")
        if r.sw != SW_OK:
            return []
        try:
            fci = parse_card_tlv(r.data, path="PSE.FCI", stage="SELECT PSE")
        except CardDataError:
            return []
        sfi_tag = find_card_tag(fci, "88")
        if sfi_tag is None or len(sfi_tag.value) != 1 or not 1 <= sfi_tag.value[0] <= 10:
            return []
        sfi = sfi_tag.value[0]
        out: list[Candidate] = []
        for rec in range(1, MAX_PSE_RECORDS + 1):
            stage = f"READ RECORD PSE SFI {sfi} record {rec}"
            r = self.ch.send(apdu.read_record(sfi, rec), stage)
            if r.sw == SW_RECORD_NOT_FOUND:
                break
            if r.sw != SW_OK:
                return []  # PSE unusable: the list of AIDs takes over (EMV Book 1 12.3.2)
            try:
                items = parse_card_tlv(r.data, path=f"PSE.SFI{sfi}.R{rec}", stage=stage)
            except CardDataError:
                return []
            if len(items) != 1 or items[0].tag != "70":
                return []
            for entry in items[0].children:
                if entry.tag != "61":
                    continue
                fields = entry.children
                aid_tag = find_card_tag(fields, "4F")
                if aid_tag is None:
                    continue
                cfg = self.cfg.aid_config(aid_tag.value)
                if cfg is not None:
                    out.append(Candidate(aid_tag.value, _label(fields) or cfg.label, _priority(fields), cfg,
                                         len(out)))
        return out

    def _from_aid_list(self) -> list[Candidate]:
        out: list[Candidate] = []
        for cfg in self.cfg.aids:
            seen: set[bytes] = set()
            for occurrence in range(MAX_NEXT_OCCURRENCES):
                stage = f"SELECT {cfg.aid}" + (" (next)" if occurrence else "")
                r = self.ch.send(apdu.select(cfg.aid_bytes, next_occurrence=occurrence > 0), stage)
                if r.sw not in (SW_OK, SW_APP_BLOCKED):
                    self._current, self._current_fci = None, []  # a failed SELECT deselects
                    break
                fci = parse_card_tlv(r.data, path=f"FCI.{cfg.aid}", stage=stage)
                df = find_card_tag(fci, "84")
                if df is None or df.value in seen:
                    break
                seen.add(df.value)
                self._current, self._current_fci = df.value, fci
                if r.sw == SW_OK and (df.value == cfg.aid_bytes or (cfg.partial and df.value.startswith(cfg.aid_bytes))):
                    out.append(Candidate(df.value, _label(fci) or cfg.label, _priority(fci), cfg, len(out)))
                if df.value == cfg.aid_bytes or not cfg.partial:
                    break
        return out

    # -- final selection -------------------------------------------------------------------------------
    def next_app(self) -> SelectedApp:
        """SELECT the best remaining candidate and return it with its FCI; drops candidates that fail."""
        while self.candidates:
            self.candidates.sort(key=Candidate.sort_key)
            cand = self.candidates.pop(0)
            if self._current == cand.aid and self._current_fci:
                fci = self._current_fci  # already selected during the list-of-AIDs walk
            else:
                stage = f"SELECT {cand.aid.hex().upper()}"
                r = self.ch.send(apdu.select(cand.aid), stage)
                self._current, self._current_fci = None, []
                if r.sw != SW_OK:
                    continue
                fci = parse_card_tlv(r.data, path=f"FCI.{cand.aid.hex().upper()}", stage=stage)
            df = find_card_tag(fci, "84")
            if df is None or df.value != cand.aid:
                self._current = None
                continue
            self._current, self._current_fci = None, []  # a GPO refusal means it must be selected again
            return SelectedApp(cand.aid, cand.label, cand.priority, cand.config, fci)
        raise NoSupportedApplication("no remaining application could be selected", stage="final selection")
