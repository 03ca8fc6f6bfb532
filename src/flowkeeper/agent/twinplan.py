"""Pure: keep every VIF described in both switch slots with the same OpenFlow number.

A host with two slots (two OVS instances, see docs/hot-upgrade.md) holds the same flows in
both. OVS keeps flows by port number, so a VIF must have the same number in both slots:
then moving its device from one slot to the other changes no flow anywhere.

The VIF's own Interface row (Nova's, the "original") lives in one slot. The agent writes a
copy into the other slot (external_ids copied, plus COPY_KEY=true) with ofport_request set
to the VIF's number, and sets ofport_request on the original too, so that the device gets
that same number whichever slot it is in, and again after it comes back. A copy whose
original is gone is deleted (the VM was deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

COPY_KEY = "flowkeeper-copy"
SLOTS = ("a", "b")


@dataclass(frozen=True)
class VifRow:
    """One VIF Interface row (it has an iface-id) on br-int of one slot."""

    name: str
    external_ids: Mapping[str, str]
    ofport: int | None  # None: the device is not in this slot now
    ofport_request: int | None

    @property
    def is_copy(self) -> bool:
        return self.external_ids.get(COPY_KEY) == "true"

    @property
    def number(self) -> int | None:
        """The number this row pins the VIF to: its request, else what OVS gave it."""
        return self.ofport_request if self.ofport_request else self.ofport


@dataclass(frozen=True)
class Copy:
    slot: str
    name: str
    external_ids: Mapping[str, str]
    ofport_request: int
    stale_keys: tuple[str, ...] = ()  # keys the copy has and its original not


@dataclass
class TwinPlan:
    copies: list[Copy] = field(default_factory=list)  # rows to create (or fix) in a slot
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (slot, name, n)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (slot, copy's name)
    pinned: dict[str, int] = field(default_factory=dict)  # VIF name -> its number
    where: dict[str, str] = field(default_factory=dict)  # VIF name -> slot with its device
    problems: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.copies) + len(self.requests) + len(self.deletes)


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def plan(rows: Mapping[str, Iterable[VifRow]], taken: Mapping[str, Mapping[str, int]]) -> TwinPlan:
    """What to write so every VIF is in both slots with one number.

    `rows`: slot -> its VIF rows on br-int; `taken`: slot -> every port name -> number the
    slot's br-int uses now (VIFs included), to refuse a number another port holds.
    """
    by_slot = {s: {r.name: r for r in rows.get(s, ())} for s in SLOTS}
    out = TwinPlan()
    for name in sorted(set(by_slot["a"]) | set(by_slot["b"])):
        here = {s: by_slot[s][name] for s in SLOTS if name in by_slot[s]}
        originals = [s for s, r in here.items() if not r.is_copy]
        present = [s for s, r in here.items() if r.ofport is not None]
        if present:
            out.where[name] = present[0]
        if not originals:  # only copies left: the VIF was deleted
            out.deletes += [(s, name) for s in here]
            continue
        home = originals[0]
        if len(originals) > 1:
            out.problems.append(f"{name}: a VIF row of its own in both slots; slot a's counts")
            home = "a"
        number = _number(here, home)
        if number is None:
            continue  # no number yet (the device has never been opened): wait for one
        out.pinned[name] = number
        orig = here[home]
        if orig.ofport_request != number:
            out.requests.append((home, name, number))
        twin = other(home)
        owner = _holder(taken.get(twin, {}), number, name)
        if owner is not None:
            out.problems.append(f"{name}: number {number} is held by {owner} in slot {twin}")
            continue
        want = dict(orig.external_ids) | {COPY_KEY: "true"}
        have = here.get(twin)
        if have is None or have.ofport_request != number or dict(have.external_ids) != want:
            if have is not None and not have.is_copy:
                continue  # both originals: reported above, not overwritten
            stale = tuple(sorted(set(have.external_ids) - set(want))) if have else ()
            out.copies.append(Copy(twin, name, want, number, stale))
    return out


def _number(here: Mapping[str, VifRow], home: str) -> int | None:
    """The VIF's number: the original's pin, else the number of the slot holding it."""
    orig = here[home]
    if orig.number is not None:
        return orig.number
    for row in here.values():
        if row.number is not None:
            return row.number
    return None


def _holder(taken: Mapping[str, int], number: int, name: str) -> str | None:
    for port, n in taken.items():
        if n == number and port != name:
            return port
    return None


def resolution(numbers: Mapping[str, int], pinned: Mapping[str, int]) -> dict[str, int]:
    """A slot's port map for flows: the ports it has, and every pinned VIF it lacks by its
    pinned number (OVS accepts flows naming a number no port holds: they never match)."""
    out = dict(numbers)
    for name, number in pinned.items():
        out.setdefault(name, number)
    return out
