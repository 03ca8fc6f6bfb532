"""Steer VM NICs between the two switch slots: a NIC attached to both, one of them live.

The "steer" VIF handover (docs/hot-upgrade.md) models a hypervisor whose VM NIC is
attached to BOTH switch slots at once and picks the live one (as a QEMU with two
vhost-user connections does). Every VIF's device is then present in both slots, each
with its ofport; a cut changes which slot the NIC's frames go to and come from, and no
device moves.

The lab models the hypervisor with one network namespace per host (HV). Per VIF, with
ID the tap name without its "tap" prefix:

    v<ID>  in HV, the peer of the VM's eth0
    a<ID>  in HV, the peer of the device named like the tap in slot a's namespace
    b<ID>  in HV, the peer of the device named like the tap in slot b's namespace

and, on the clsact ingress of each of the three, one filter (preference 1, handle 1):

    v<ID>           -> mirred egress redirect dev <active slot><ID>
    <active><ID>    -> mirred egress redirect dev v<ID>
    <inactive><ID>  -> drop

This kernel has neither matchall nor the gact action (`action drop`), and `tc filter
replace` cannot change a filter's kind, so all three are cls_bpf filters with a
one-instruction classic BPF program: `ret #-1` (match) with a mirred action, or `ret #2`
(TC_ACT_SHOT) in direct-action mode, which drops the frame. Each flip replaces the three
filters in place, so it is idempotent; all flips of one call go in ONE
`tc -n HV -force -batch -` run. Names are checked before they reach `tc`; nothing goes
through a shell.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterable, Mapping

from flowkeeper.agent.tcbatch import TcBatch, TcBatchError
from flowkeeper.agent.vifmove import absent, valid_netns

SLOTS = ("a", "b")
VM_SIDE = "v"  # prefix of the VM NIC's end in the hypervisor namespace
TAP_PREFIX = "tap"
IFNAMSIZ = 15  # longest Linux device name
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,13}$")  # so that v<ID>, a<ID> are <= 15
TIMEOUT_S = 10.0
# One classic BPF instruction each (BPF_RET|BPF_K = 6): -1 matches, 2 is TC_ACT_SHOT.
_MATCH = 'bpf bytecode "1,6 0 0 4294967295,"'
_DROP = 'bpf bytecode "1,6 0 0 2," da'
_WHERE = "ingress pref 1 handle 1 protocol all"


class SteerError(Exception):
    """A name that is not a device's, or a `tc` run that failed or did not finish.

    `missing`: devices `tc` did not find (when that was its only complaint, `only_missing`);
    `took`: how long the run took, in seconds."""

    def __init__(
        self, msg: str, missing: set[str] | None = None, only_missing: bool = False,
        took: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__(msg)
        self.missing = missing or set()
        self.only_missing = only_missing
        self.took = took


def valid_id(vif: str) -> bool:
    return bool(_ID.match(vif))


def vif_id(tap: str) -> str:
    """A tap's ID: its name without the "tap" prefix (tap3f2a9c1d-4e -> 3f2a9c1d-4e)."""
    vif = tap.removeprefix(TAP_PREFIX)
    if not tap.startswith(TAP_PREFIX) or len(tap) > IFNAMSIZ or not valid_id(vif):
        raise SteerError(f"not a tap name: {tap!r}")
    return vif


def device(side: str, vif: str) -> str:
    """The hypervisor namespace's device of a VIF: side "v" (the VM), "a" or "b" (a slot)."""
    if side not in (VM_SIDE, *SLOTS):
        raise SteerError(f"not a side of a steered VIF: {side!r}")
    if not valid_id(vif):
        raise SteerError(f"not a VIF id: {vif!r}")
    return f"{side}{vif}"


def _check_slot(slot: str) -> None:
    if slot not in SLOTS:
        raise SteerError(f"not a switch slot: {slot!r} (a or b)")


def _replace(dev: str, what: str) -> str:
    return f"filter replace dev {dev} {_WHERE} {what}\n"


def redirect(dev: str, to: str) -> str:
    """The `tc -batch` line sending every frame entering `dev` out of `to`."""
    return _replace(dev, f"{_MATCH} action mirred egress redirect dev {to}")


def drop(dev: str) -> str:
    """The `tc -batch` line dropping every frame entering `dev`."""
    return _replace(dev, _DROP)


def _sides(vif: str, to_slot: str) -> tuple[str, str, str]:
    _check_slot(to_slot)
    old = "b" if to_slot == "a" else "a"
    return device(VM_SIDE, vif), device(to_slot, vif), device(old, vif)


def make_lines(ids: Iterable[str], to_slot: str) -> str:
    """The `tc -batch` text that makes the new path: per VIF, the new slot's frames to the
    VM, then the VM's frames to the new slot (the old slot's frames still reach the VM)."""
    _check_slot(to_slot)
    lines = []
    for vif in ids:
        vm, new, _gone = _sides(vif, to_slot)
        lines += [redirect(new, vm), redirect(vm, new)]
    return "".join(lines)


def break_lines(ids: Iterable[str], to_slot: str) -> str:
    """The `tc -batch` text that breaks the old path: per VIF, the old slot's frames dropped."""
    _check_slot(to_slot)
    return "".join(drop(_sides(vif, to_slot)[2]) for vif in ids)


def steer_lines(ids: Iterable[str], to_slot: str) -> str:
    """The `tc -batch` text steering every listed VIF to `to_slot` at once: per VIF, the new
    slot's frames to the VM first, then the VM's frames to the new slot, then the old slot's
    frames dropped (3 `filter replace` lines; the same text again changes nothing)."""
    _check_slot(to_slot)
    return "".join(make_lines([vif], to_slot) + break_lines([vif], to_slot) for vif in ids)


def steer(
    ns: str,
    ids: list[str],
    to_slot: str,
    batch: TcBatch | None = None,
    overlap: float = 0.0,
) -> float:
    """Steer the VIFs to `to_slot`; returns the seconds `tc` took (without the overlap).
    See steer_timed."""
    return sum(steer_timed(ns, ids, to_slot, batch, overlap))


def steer_timed(
    ns: str,
    ids: list[str],
    to_slot: str,
    batch: TcBatch | None = None,
    overlap: float = 0.0,
) -> tuple[float, float]:
    """Steer the VIFs to `to_slot`: (seconds until the new path was made, seconds of the
    run that broke the old one afterwards). SteerError if `tc` failed (with -force it goes
    on after a failed line: the other VIFs are steered; the error names the devices it did
    not find).

    overlap 0: ONE `tc -n NS -force -batch -` run, both at once (0 s for the second).
    overlap > 0, make before break: one run makes the new path, the old slot's frames still
    reach the VM for `overlap` s, then a second run drops them. The two slots are two
    processes, each with its own delay: a frame both got may come out of the old slot
    milliseconds after the new one's copy, and an instant switch drops it. In the overlap
    the VM may get such a frame twice. A make run that fails breaks nothing."""
    if overlap <= 0:
        return _run(ns, steer_lines(ids, to_slot), batch), 0.0
    made = make_path(ns, ids, to_slot, batch)
    time.sleep(overlap)
    return made, break_path(ns, ids, to_slot, batch)


def make_path(ns: str, ids: list[str], to_slot: str, batch: TcBatch | None = None) -> float:
    """One `tc -batch` run: the VIFs' new path to `to_slot` (make_lines); seconds taken."""
    return _run(ns, make_lines(ids, to_slot), batch)


def break_path(ns: str, ids: list[str], to_slot: str, batch: TcBatch | None = None) -> float:
    """One `tc -batch` run: the old slot's frames to the VIFs dropped (break_lines)."""
    return _run(ns, break_lines(ids, to_slot), batch)


def _run(ns: str, text: str, batch: TcBatch | None) -> float:
    """Carry out `text` in ONE `tc -batch` run: the kept one when it is in `ns`."""
    if not valid_netns(ns):
        raise SteerError(f"not a namespace name: {ns!r}")
    if not text:
        return 0.0
    if batch is not None and batch.ns == ns:  # the tc kept running: no process start
        try:
            took, errors = batch.run(text)
        except TcBatchError:
            pass  # it could not be reached: a tc of its own below (the text is idempotent)
        else:
            if errors.strip():
                missing, only = absent(errors)
                msg = f"tc -batch in {ns} failed: {errors.strip()}"
                raise SteerError(msg, missing, only and bool(missing), took)
            return took
    argv = ["tc", "-n", ns, "-force", "-batch", "-"]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(
            argv, input=text, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise SteerError(f"tc -batch in {ns} did not finish in {TIMEOUT_S:.0f} s") from None
    took = time.perf_counter() - t0
    if out.returncode != 0:
        missing, only = absent(out.stderr)
        raise SteerError(
            f"tc -batch in {ns} failed ({out.returncode}): {out.stderr.strip()}",
            missing,
            only and bool(missing),
            took,
        )
    return took


# --- reading the steering state -----------------------------------------------------
def show_lines(ids: Iterable[str]) -> str:
    """The `tc -batch` text listing each VIF's VM-side ingress filter."""
    return "".join(f"filter show dev {device(VM_SIDE, vif)} ingress\n" for vif in ids)


def parse_active(text: str) -> dict[str, str]:
    """VIF id -> the slot its VM's frames go to, from `tc -j` filter listings (one JSON
    array per listed device, in any number; a device with no redirect is left out)."""
    decoder = json.JSONDecoder()
    out: dict[str, str] = {}
    pos = 0
    for _ in range(len(text) + 1):  # bounded: each round consumes at least one character
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            item, pos = decoder.raw_decode(text, pos)
        except ValueError:
            break
        for target in _redirect_targets(item):
            side, vif = target[:1], target[1:]
            if side in SLOTS and valid_id(vif):
                out[vif] = side
    return out


def _redirect_targets(listing: object) -> list[str]:
    targets = []
    for flt in listing if isinstance(listing, list) else []:
        options = flt.get("options", {}) if isinstance(flt, Mapping) else {}
        for action in options.get("actions", []) if isinstance(options, Mapping) else []:
            if isinstance(action, Mapping) and action.get("kind") == "mirred":
                to = action.get("to_dev")
                if isinstance(to, str) and action.get("mirred_action") == "redirect":
                    targets.append(to)
    return targets


def active_slots(ns: str, ids: list[str]) -> dict[str, str]:
    """VIF id -> its active slot, read with ONE `tc -n NS -j -force -batch -` run (a VIF
    whose devices are gone, or that is not steered, is left out)."""
    if not valid_netns(ns):
        raise SteerError(f"not a namespace name: {ns!r}")
    text = show_lines(ids)
    if not text:
        return {}
    argv = ["tc", "-n", ns, "-j", "-force", "-batch", "-"]
    try:
        out = subprocess.run(
            argv, input=text, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise SteerError(f"tc -batch in {ns} did not finish in {TIMEOUT_S:.0f} s") from None
    got = parse_active(out.stdout)
    return {vif: got[vif] for vif in ids if vif in got}
