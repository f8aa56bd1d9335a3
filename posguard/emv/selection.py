"""Application selection (EMV Book 1 section 12): PSE directory first, list of AIDs as fallback;
the highest priority (tag 87, 1 = highest, 0 = none) candidate wins."""

from __future__ import annotations

from dataclasses import dataclass

from posguard.emv import apdu
from posguard.emv.channel import CardChannel, first_values, template_entries
from posguard.emv.errors import CardDataError, CardStatusError, NoSupportedApplication
from posguard.emv.terminal import AidConfig, EmvTerminal

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
    fci: dict[str, bytes]  # the FCI's first value of each tag, depth-first (channel.first_values)

    @property
    def pdol(self) -> bytes | None:
        return self.fci.get("9F38")


def _label(entry: dict[str, bytes]) -> str:
    """Application preferred name (9F12), else application label (50), of a directory entry or FCI."""
    for tag in ("9F12", "50"):
        value = entry.get(tag)
        if value is not None:
            return value.decode("ascii", "replace").strip()
    return ""


def _priority(entry: dict[str, bytes]) -> int:
    value = entry.get("87")
    return value[0] & 0x0F if value else 0


class Selector:
    """Builds the candidate list once; ``next_app`` selects the best remaining candidate (again after a GPO
    refusal with 6985)."""

    def __init__(self, channel: CardChannel, cfg: EmvTerminal) -> None:
        self.ch = channel
        self.cfg = cfg
        self.method = ""
        self.candidates: list[Candidate] = []
        self._current: bytes | None = None  # DF name of the application selected on the card right now
        self._current_fci: dict[str, bytes] = {}

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
            fci = first_values(r.data, path="PSE.FCI", stage="SELECT PSE")
        except CardDataError:
            return []
        sfi_value = fci.get("88")
        if sfi_value is None or len(sfi_value) != 1 or not 1 <= sfi_value[0] <= 10:
            return []
        sfi = sfi_value[0]
        out: list[Candidate] = []
        for rec in range(1, MAX_PSE_RECORDS + 1):
            stage = f"READ RECORD PSE SFI {sfi} record {rec}"
            r = self.ch.send(apdu.read_record(sfi, rec), stage)
            if r.sw == SW_RECORD_NOT_FOUND:
                break
            if r.sw != SW_OK:
                return []  # PSE unusable: the list of AIDs takes over (EMV Book 1 12.3.2)
            try:
                entries = template_entries(r.data, "70", "61", path=f"PSE.SFI{sfi}.R{rec}", stage=stage)
            except CardDataError:
                return []
            if entries is None:
                return []  # not one 70 template
            for entry in entries:  # each application template (61)
                aid = entry.get("4F")
                if aid is None:
                    continue
                cfg = self.cfg.aid_config(aid)
                if cfg is not None:
                    out.append(Candidate(aid, _label(entry) or cfg.label, _priority(entry), cfg, len(out)))
        return out

    def _from_aid_list(self) -> list[Candidate]:
        out: list[Candidate] = []
        for cfg in self.cfg.aids:
            seen: set[bytes] = set()
            for occurrence in range(MAX_NEXT_OCCURRENCES):
                stage = f"SELECT {cfg.aid}" + (" (next)" if occurrence else "")
                r = self.ch.send(apdu.select(cfg.aid_bytes, next_occurrence=occurrence > 0), stage)
                if r.sw not in (SW_OK, SW_APP_BLOCKED):
                    self._current, self._current_fci = None, {}  # a failed SELECT deselects
                    break
                fci = first_values(r.data, path=f"FCI.{cfg.aid}", stage=stage)
                df = fci.get("84")
                if df is None or df in seen:
                    break
                seen.add(df)
                self._current, self._current_fci = df, fci
                if r.sw == SW_OK and (df == cfg.aid_bytes or (cfg.partial and df.startswith(cfg.aid_bytes))):
                    out.append(Candidate(df, _label(fci) or cfg.label, _priority(fci), cfg, len(out)))
                if df == cfg.aid_bytes or not cfg.partial:
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
                self._current, self._current_fci = None, {}
                if r.sw != SW_OK:
                    continue
                fci = first_values(r.data, path=f"FCI.{cand.aid.hex().upper()}", stage=stage)
            if fci.get("84") != cand.aid:
                self._current = None
                continue
            self._current, self._current_fci = None, {}  # a GPO refusal means it must be selected again
            return SelectedApp(cand.aid, cand.label, cand.priority, cand.config, fci)
        raise NoSupportedApplication("no remaining application could be selected", stage="final selection")
