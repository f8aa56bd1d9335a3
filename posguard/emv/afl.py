"""Application File Locator (tag 94): which records to read (EMV Book 3 section 10.2)."""

from __future__ import annotations

from dataclasses import dataclass

from posguard.emv.errors import CardDataError


@dataclass(frozen=True, slots=True)
class AflEntry:
    sfi: int
    first: int
    last: int
    oda_records: int  # how many of these records take part in offline data authentication

    def records(self) -> range:
        return range(self.first, self.last + 1)


def parse_afl(afl: bytes) -> list[AflEntry]:
    """Parse and validate an AFL; raises CardDataError naming the bad entry's offset."""
    if not afl or len(afl) % 4:
        raise CardDataError(f"AFL of {len(afl)} bytes is not a non-empty multiple of 4", stage="GPO", path="94")
    out: list[AflEntry] = []
    for off in range(0, len(afl), 4):
        b0, first, last, oda = afl[off:off + 4]
        sfi = b0 >> 3
        problem = None
        if b0 & 0x07 or not 1 <= sfi <= 30:
            problem = f"SFI byte {b0:02X} is not an SFI 1-30"
        elif first == 0:
            problem = "first record is 0"
        elif last < first:
            problem = f"last record {last} before first {first}"
        elif oda > last - first + 1:
            problem = f"{oda} ODA records but only {last - first + 1} records"
        if problem:
            raise CardDataError(f"bad AFL entry: {problem}", stage="GPO", path="94", offset=off)
        out.append(AflEntry(sfi, first, last, oda))
    return out


def afl_records(entries: list[AflEntry]) -> list[tuple[int, int]]:
    """(SFI, record) pairs to read, in AFL order, each exactly once."""
    seen: set[tuple[int, int]] = set()
    out = []
    for e in entries:
        for r in e.records():
            if (e.sfi, r) not in seen:
                seen.add((e.sfi, r))
                out.append((e.sfi, r))
    return out
