"""OVSDB through ovsdbapp: bridges, patch and tunnel ports, interfaces, port other_config."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from flowkeeper.ovs.errors import OvsdbError

log = logging.getLogger(__name__)

TUNNEL_TYPES = frozenset({"vxlan", "gre"})
_TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")


@dataclass(frozen=True)
class InterfaceInfo:
    """What the agent needs to know about one OVS interface."""

    name: str
    type: str
    ofport: int | None
    external_ids: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ofport_request: int | None = None

    @property
    def iface_id(self) -> str | None:
        return self.external_ids.get("iface-id")


@dataclass(frozen=True)
class BridgeInfo:
    """A bridge's name and the settings the agent must not change on bridges it did not
    create (datapath_type "" is OVS's default, reported here as "system")."""

    name: str
    datapath_type: str
    fail_mode: str


InterfaceCallback = Callable[[str, InterfaceInfo], None]


class _NotifyingIdl(connection.OvsdbIdl):  # type: ignore[misc]
    """An IDL that reports Interface row changes to registered callbacks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.callbacks: list[InterfaceCallback] = []

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if row._table.name != "Interface" or not self.callbacks:
            return
        info = _interface_info(row)
        for callback in list(self.callbacks):
            try:
                callback(event, info)
            except Exception:  # a callback bug must not kill the IDL thread
                log.exception("interface watcher failed")


def _interface_info(row: Any) -> InterfaceInfo:
    ofport = row.ofport[0] if getattr(row, "ofport", None) else None
    request = row.ofport_request[0] if getattr(row, "ofport_request", None) else None
    return InterfaceInfo(
        name=row.name,
        type=row.type,
        ofport=ofport if ofport is not None and ofport > 0 else None,
        external_ids=dict(row.external_ids),
        options=dict(row.options),
        ofport_request=request if isinstance(request, int) and request > 0 else None,
    )


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


class Ovsdb:
    """A connection to one host's ovsdb-server (unix socket), with typed helpers."""

    def __init__(self, remote: str, timeout: float = 10.0) -> None:
        self.remote = remote
        self.timeout = timeout
        try:
            self._idl = _NotifyingIdl.from_server(remote, "Open_vSwitch", helper_tables=_TABLES)
            self._conn = connection.Connection(idl=self._idl, timeout=timeout)
            # ovsdbapp keeps one connection per Backend *class*; a class of our own per
            # instance lets one process talk to several hosts' ovsdb-servers.
            api_class = type("HostOvsdbApi", (impl_idl.OvsdbIdl,), {})
            self.api = api_class(self._conn)
        except Exception as exc:
            raise OvsdbError(f"cannot connect to OVSDB at {remote}: {exc}") from None

    def close(self) -> None:
        try:
            self._conn.stop(timeout=self.timeout)
        except Exception:  # closing is best effort
            log.debug("error closing OVSDB connection", exc_info=True)

    def __enter__(self) -> Ovsdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, what: str, *commands: Any) -> None:
        try:
            with self.api.transaction(check_error=True) as txn:
                for cmd in commands:
                    txn.add(cmd)
        except Exception as exc:
            raise OvsdbError(f"OVSDB {what} failed: {exc}") from None

    def bridges(self) -> dict[str, BridgeInfo]:
        """Every bridge on the switch, by name, with the settings the agent cares about."""
        cols = ["name", "datapath_type", "fail_mode"]
        try:
            rows = self.api.db_list("Bridge", columns=cols).execute(check_error=True)
        except Exception as exc:
            raise OvsdbError(f"cannot list bridges: {exc}") from None
        out = {}
        for row in rows:
            fail_mode = row["fail_mode"]
            fail_mode = fail_mode[0] if isinstance(fail_mode, list) and fail_mode else fail_mode
            out[row["name"]] = BridgeInfo(
                row["name"], row["datapath_type"] or "system", fail_mode or ""
            )
        return out

    def create_bridge(self, name: str, *, datapath_type: str, fail_mode: str) -> bool:
        """Create a bridge with these settings; False (and nothing changed) if it exists.

        An existing bridge is never touched: ovsdbapp's add_br(may_exist=True) would set
        its datapath_type, which on a kernel-datapath host rebuilds the bridge.
        """
        if name in self.bridges():
            return False
        try:
            self._execute(
                f"create bridge {name}",
                self.api.add_br(name, may_exist=False, datapath_type=datapath_type),
                self.api.db_set("Bridge", name, ("fail_mode", fail_mode)),
            )
        except OvsdbError:
            if name in self.bridges():  # someone else created it meanwhile: theirs
                return False
            raise
        return True

    def ensure_bridge(self, name: str, *, datapath_type: str, fail_mode: str = "secure") -> None:
        """Create the bridge if missing, else set its datapath type and fail mode (lab use:
        the lab owns its hosts' bridges)."""
        self._execute(
            f"ensure bridge {name}",
            self.api.add_br(name, may_exist=True, datapath_type=datapath_type),
            self.api.db_set("Bridge", name, ("fail_mode", fail_mode)),
        )

    def global_other_config(self) -> dict[str, str]:
        """Open_vSwitch other_config (flow-restore-wait and friends)."""
        try:
            cfg = self.api.db_get("Open_vSwitch", ".", "other_config").execute(check_error=True)
        except Exception as exc:
            raise OvsdbError(f"cannot read Open_vSwitch other_config: {exc}") from None
        return dict(cfg)

    def delete_bridge(self, name: str) -> None:
        self._execute(f"delete bridge {name}", self.api.del_br(name, if_exists=True))

    def ensure_port(
        self,
        bridge: str,
        name: str,
        *,
        iface_type: str = "",
        options: Mapping[str, str] | None = None,
        external_ids: Mapping[str, str] | None = None,
    ) -> None:
        """Add a port with one interface, or update the interface's settings."""
        attrs: dict[str, Any] = {"type": iface_type}
        if options is not None:
            attrs["options"] = dict(options)
        if external_ids is not None:
            attrs["external_ids"] = dict(external_ids)
        sets = [(key, value) for key, value in attrs.items()]
        self._execute(
            f"ensure port {name} on {bridge}",
            self.api.add_port(bridge, name, may_exist=True),
            self.api.db_set("Interface", name, *sets),
        )

    def ensure_patch_port(self, bridge: str, name: str, peer: str) -> None:
        self.ensure_port(bridge, name, iface_type="patch", options={"peer": peer})

    def ensure_tunnel_port(
        self, bridge: str, name: str, kind: str, remote_ip: str, local_ip: str
    ) -> None:
        """A VXLAN or GRE port to one peer; the tunnel id comes from the flow (key=flow)."""
        if kind not in TUNNEL_TYPES:
            raise OvsdbError(f"unknown tunnel type {kind!r} (expected vxlan or gre)")
        opts = {"remote_ip": remote_ip, "local_ip": local_ip, "key": "flow"}
        self.ensure_port(bridge, name, iface_type=kind, options=opts)

    def put_vif_copy(
        self,
        bridge: str,
        name: str,
        external_ids: Mapping[str, str],
        ofport_request: int,
        stale_keys: tuple[str, ...] = (),
    ) -> None:
        """A VIF's Interface row (as its original slot has it) with a pinned number; keys
        its original no longer has (`stale_keys`) go, so a copy equals its original."""
        drop = [self.api.db_remove("Interface", name, "external_ids", k) for k in stale_keys]
        self._execute(
            f"copy VIF {name} onto {bridge}",
            self.api.add_port(bridge, name, may_exist=True),
            *drop,
            self.api.db_set(
                "Interface",
                name,
                ("external_ids", dict(external_ids)),
                ("ofport_request", ofport_request),
            ),
        )

    def set_ofport_request(self, name: str, number: int) -> None:
        self._execute(
            f"pin {name} to OpenFlow port {number}",
            self.api.db_set("Interface", name, ("ofport_request", number)),
        )

    def delete_port(self, bridge: str, name: str) -> None:
        self._execute(f"delete port {name}", self.api.del_port(name, bridge, if_exists=True))

    def interfaces(self) -> list[InterfaceInfo]:
        """Every interface with its ofport (None until OVS assigns one)."""
        cols = ["name", "type", "ofport", "external_ids", "options", "ofport_request"]
        try:
            rows = self.api.db_list("Interface", columns=cols).execute(check_error=True)
        except Exception as exc:
            raise OvsdbError(f"cannot list interfaces: {exc}") from None
        infos = []
        for row in rows:
            ofport, request = _first(row["ofport"]), _first(row["ofport_request"])
            infos.append(
                InterfaceInfo(
                    name=row["name"],
                    type=row["type"],
                    ofport=ofport if isinstance(ofport, int) and ofport > 0 else None,
                    external_ids=dict(row["external_ids"]),
                    options=dict(row["options"]),
                    ofport_request=request if isinstance(request, int) and request > 0 else None,
                )
            )
        return sorted(infos, key=lambda i: i.name)

    def bridge_ports(self, bridge: str) -> list[str]:
        try:
            return sorted(self.api.list_ports(bridge).execute(check_error=True))
        except Exception as exc:
            raise OvsdbError(f"cannot list ports of {bridge}: {exc}") from None

    def port_other_config(self, name: str) -> dict[str, str]:
        try:
            value = self.api.db_get("Port", name, "other_config").execute(check_error=True)
        except Exception as exc:
            raise OvsdbError(f"cannot read other_config of port {name}: {exc}") from None
        return dict(value)

    def set_port_other_config(self, name: str, values: Mapping[str, str]) -> None:
        """Merge keys into Port other_config (other keys are kept)."""
        self._execute(
            f"set other_config of port {name}",
            self.api.db_set("Port", name, ("other_config", dict(values))),
        )

    def set_global_other_config(self, key: str, value: str | None) -> None:
        """Set or remove one key of Open_vSwitch other_config (e.g. flow-restore-wait)."""
        if value is None:
            cmd = self.api.db_remove("Open_vSwitch", ".", "other_config", key, if_exists=True)
        else:
            cmd = self.api.db_set("Open_vSwitch", ".", ("other_config", {key: value}))
        self._execute(f"set other_config:{key}", cmd)

    def watch_interfaces(self, callback: InterfaceCallback) -> Callable[[], None]:
        """Call back on every Interface create/update/delete; returns an unsubscribe."""
        self._idl.callbacks.append(callback)

        def cancel() -> None:
            if callback in self._idl.callbacks:
                self._idl.callbacks.remove(callback)

        return cancel

    def wait_ofports(self, names: list[str], timeout: float = 10.0) -> dict[str, int]:
        """Wait until OVS has assigned an ofport to each named interface."""
        deadline = time.monotonic() + timeout
        wanted = set(names)
        event = threading.Event()
        cancel = self.watch_interfaces(lambda _e, _i: event.set())
        try:
            while True:
                found = {i.name: i.ofport for i in self.interfaces() if i.name in wanted}
                ready = {n: p for n, p in found.items() if p is not None}
                if len(ready) == len(wanted):
                    return ready
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = ", ".join(sorted(wanted - set(ready)))
                    raise OvsdbError(f"no ofport for {missing} after {timeout:.0f}s")
                event.wait(min(left, 0.2))
                event.clear()
        finally:
            cancel()
