"""API clients: `Client` (sync, urllib) for the CLI, `AsyncClient` (aiohttp) for agents."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper import model
from flowkeeper.cperrors import Compacted
from flowkeeper.errors import FlowkeeperError, UsageError
from flowkeeper.model import Host, Network, Port, PortStatus, View, WatchEvent
from flowkeeper.tlsconf import client_context, describe_tls_error, resolve_ca

if TYPE_CHECKING:  # aiohttp is imported when an AsyncClient first needs it
    import aiohttp

__all__ = [
    "DEFAULT_SERVER",
    "ApiError",
    "AsyncClient",
    "Client",
    "Compacted",
    "Event",
    "ServerUnavailable",
    "resolve_ca",
    "resolve_server",
    "resolve_token",
]

DEFAULT_SERVER = "http://127.0.0.1:9696"
Event = WatchEvent  # what watch() yields: revision, kind, op, object


class ApiError(FlowkeeperError):
    """The server refused a request: its one-line error and the HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.message = message
        self.status = status


class ServerUnavailable(FlowkeeperError):
    """The server could not be reached, or the connection broke."""


def resolve_server(server: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """--server, else $FLOWKEEPER_SERVER, else http://127.0.0.1:9696."""
    env = os.environ if env is None else env
    url = (server or env.get("FLOWKEEPER_SERVER") or DEFAULT_SERVER).rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"bad server URL {url!r}: use http://HOST:PORT")
    return url


def resolve_token(
    token_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """--token-file, else $FLOWKEEPER_TOKEN, else None (then only /v1/openapi.json answers)."""
    env = os.environ if env is None else env
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read token file {token_file}: {exc.strerror}") from None
        if not token:
            raise UsageError(f"token file {token_file} is empty")
        return token
    return env.get("FLOWKEEPER_TOKEN") or None


def _error_message(status: int, raw: bytes) -> ApiError:
    try:
        message = str(json.loads(raw)["error"])
    except (ValueError, KeyError, TypeError):
        message = raw.decode(errors="replace").strip()[:200] or "no details"
    return ApiError(" ".join(message.split()), status)


def _raise_for(status: int, raw: bytes) -> None:
    if status < 400:
        return
    err = _error_message(status, raw)
    if status == 410:
        raise Compacted(err.message)
    raise err


def _port_body(
    network_id: str,
    host: str,
    mac: str,
    fixed_ips: Sequence[str],
    *,
    name: str,
    device_id: str,
    port_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "network_id": network_id,
        "host": host,
        "mac": mac,
        "fixed_ips": list(fixed_ips),
        "name": name,
        "device_id": device_id,
    }
    if port_id is not None:
        body["id"] = port_id
    return body


def _host_body(
    tunnel_ip: str, l2pop: bool, virtual: bool, state: str, revision: int
) -> dict[str, Any]:
    return {
        "tunnel_ip": tunnel_ip,
        "l2pop": l2pop,
        "virtual": virtual,
        "state": state,
        "revision": revision,
    }


LIVENESS_FIELDS = ("alive", "since")


def host_record(data: Any) -> Host:
    """A host of GET /v1/hosts[/{name}] without the liveness the server adds (`alive`,
    `since`), which is no part of the stored Host."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in LIVENESS_FIELDS}
    return Host.from_dict(data)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _tls(base_url: str, ca: str | Path | None) -> ssl.SSLContext | None:
    """The context that checks an https server's certificate (against `ca` if given)."""
    if not base_url.startswith("https:"):
        return None
    return client_context(Path(ca) if ca else None)


def _unreachable(exc: BaseException, base_url: str) -> ServerUnavailable:
    tls = describe_tls_error(exc, base_url)
    if tls is not None:
        return ServerUnavailable(tls)
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return ServerUnavailable(f"cannot reach the server at {base_url}: {reason}")


class Client:
    """Synchronous client for the CLI and tests (urllib; no extra dependency).
    With an https URL, the server's certificate is checked against `ca` (a PEM file) or,
    without it, against the system's trusted CAs."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        token: str | None = None,
        timeout: float = 30.0,
        ca: str | Path | None = None,
    ) -> None:
        self.base_url = resolve_server(base_url, {})
        self.token = token
        self.timeout = timeout
        self.tls = _tls(self.base_url, ca)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str | None] | None = None,
    ) -> Any:
        """One API call; returns the decoded JSON answer."""
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        status = 200
        try:
            with urllib.request.urlopen(  # noqa: S310 - http(s) only
                req, timeout=self.timeout, context=self.tls
            ) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise _unreachable(exc, self.base_url) from None
        _raise_for(status, raw)
        return json.loads(raw) if raw else None

    # networks
    def create_network(
        self,
        name: str,
        type: str = "vxlan",
        segmentation_id: int | None = None,
        cidr: str | None = None,
        id: str | None = None,
    ) -> Network:
        body: dict[str, Any] = {"name": name, "type": type}
        for key, value in (("segmentation_id", segmentation_id), ("cidr", cidr), ("id", id)):
            if value is not None:
                body[key] = value
        return Network.from_dict(self.request("POST", "/v1/networks", body))

    def list_networks(self) -> list[Network]:
        return [Network.from_dict(n) for n in self.request("GET", "/v1/networks")["networks"]]

    def get_network(self, network_id: str) -> Network:
        return Network.from_dict(self.request("GET", f"/v1/networks/{_q(network_id)}"))

    def find_network(self, name_or_id: str) -> Network:
        """A network by id, or else by name."""
        for net in self.list_networks():
            if name_or_id in (net.id, net.name):
                return net
        raise ApiError(f"network {name_or_id!r} not found", 404)

    def delete_network(self, network_id: str) -> int:
        """Returns the revision of the delete."""
        return int(self.request("DELETE", f"/v1/networks/{_q(network_id)}")["revision"])

    # ports
    def create_port(
        self,
        network_id: str,
        host: str,
        mac: str,
        fixed_ips: Sequence[str] = (),
        *,
        name: str = "",
        device_id: str = "",
        id: str | None = None,
    ) -> Port:
        body = _port_body(
            network_id, host, mac, fixed_ips, name=name, device_id=device_id, port_id=id
        )
        return Port.from_dict(self.request("POST", "/v1/ports", body))

    def list_ports(self, network_id: str | None = None, host: str | None = None) -> list[Port]:
        data = self.request("GET", "/v1/ports", query={"network_id": network_id, "host": host})
        return [Port.from_dict(p) for p in data["ports"]]

    def get_port(self, port_id: str) -> Port:
        return Port.from_dict(self.request("GET", f"/v1/ports/{_q(port_id)}"))

    def delete_port(self, port_id: str) -> int:
        return int(self.request("DELETE", f"/v1/ports/{_q(port_id)}")["revision"])

    def set_port_status(self, port_id: str, status: PortStatus) -> Port:
        data = self.request("PUT", f"/v1/ports/{_q(port_id)}/status", {"status": status})
        return Port.from_dict(data)

    def bind_port(self, port_id: str, host: str) -> Port:
        """Move the port's binding to another host (a migration)."""
        data = self.request("PUT", f"/v1/ports/{_q(port_id)}/binding", {"host": host})
        return Port.from_dict(data)

    # hosts
    def list_hosts(self) -> list[Host]:
        return [host_record(h) for h in self.request("GET", "/v1/hosts")["hosts"]]

    def get_host(self, name: str) -> Host:
        return host_record(self.request("GET", f"/v1/hosts/{_q(name)}"))

    def delete_host(self, name: str) -> int:
        """Remove a host's registration (admin); returns the revision of the delete."""
        return int(self.request("DELETE", f"/v1/hosts/{_q(name)}")["revision"])

    def register_host(
        self,
        name: str,
        tunnel_ip: str,
        *,
        l2pop: bool = True,
        virtual: bool = False,
        state: str = "unknown",
        revision: int = 0,
    ) -> Host:
        body = _host_body(tunnel_ip, l2pop, virtual, state, revision)
        return Host.from_dict(self.request("PUT", f"/v1/hosts/{_q(name)}", body))

    def view(self, host: str) -> View:
        return View.from_dict(self.request("GET", f"/v1/hosts/{_q(host)}/view"))

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.request("GET", "/v1/stats")
        return data

    # tokens (admin)
    def create_token(self, role: str, host: str = "", note: str = "") -> dict[str, Any]:
        """A new token; the answer's "secret" is shown this once and never again."""
        body = {
            "role": role,
            **({"host": host} if host else {}),
            **({"note": note} if note else {}),
        }
        data: dict[str, Any] = self.request("POST", "/v1/tokens", body)
        return data

    def list_tokens(self) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = self.request("GET", "/v1/tokens")["tokens"]
        return tokens

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.request("DELETE", f"/v1/tokens/{_q(token_id)}")
        return data

    def revision(self) -> int:
        """The server's current revision."""
        return int(self.stats()["revision"])


class AsyncClient:
    """Asynchronous client for agents: registration, list (view) + watch, port status."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        token: str | None = None,
        timeout: float = 30.0,
        ca: str | Path | None = None,
    ) -> None:
        self.base_url = resolve_server(base_url, {})
        self.token = token
        self.timeout = timeout
        self.tls = _tls(self.base_url, ca)
        self._session: aiohttp.ClientSession | None = None
        # The server's store identity, from the last response (None: not sent).
        self.cluster_id: str | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True)
            self._session = aiohttp.ClientSession(headers=self._headers(), connector=connector)
        return self._session

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self._open().request(
                method, self.base_url + path, json=body, timeout=timeout
            ) as resp:
                raw = await resp.read()
                self.cluster_id = resp.headers.get(model.CLUSTER_HEADER)
                _raise_for(resp.status, raw)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _unreachable(exc, self.base_url) from None
        return json.loads(raw) if raw else None

    async def register_host(
        self,
        name: str,
        tunnel_ip: str,
        *,
        l2pop: bool = True,
        virtual: bool = False,
        state: str = "unknown",
        revision: int = 0,
    ) -> Host:
        """Registration and heartbeat (PUT /v1/hosts/{name})."""
        body = _host_body(tunnel_ip, l2pop, virtual, state, revision)
        return Host.from_dict(await self.request("PUT", f"/v1/hosts/{_q(name)}", body))

    async def view(self, host: str, standby_for: str = "") -> View:
        query = f"?standby_for={_q(standby_for)}" if standby_for else ""
        data = await self.request("GET", f"/v1/hosts/{_q(host)}/view{query}")
        return View.from_dict(data)

    async def set_port_status(
        self, port_id: str, status: PortStatus, host: str | None = None
    ) -> Port:
        body = {"status": status, **({"host": host} if host else {})}
        data = await self.request("PUT", f"/v1/ports/{_q(port_id)}/status", body)
        return Port.from_dict(data)

    async def create_port(
        self,
        network_id: str,
        host: str,
        mac: str,
        fixed_ips: Sequence[str] = (),
        *,
        name: str = "",
        device_id: str = "",
        id: str | None = None,
    ) -> Port:
        body = _port_body(
            network_id, host, mac, fixed_ips, name=name, device_id=device_id, port_id=id
        )
        return Port.from_dict(await self.request("POST", "/v1/ports", body))

    async def delete_port(self, port_id: str) -> int:
        return int((await self.request("DELETE", f"/v1/ports/{_q(port_id)}"))["revision"])

    async def watch(
        self, host: str, from_revision: int, idle_timeout: float = 30.0, standby_for: str = ""
    ) -> AsyncIterator[WatchEvent]:
        """Every message for `host` after `from_revision`, then live ones, forever.

        Heartbeats are yielded too (kind "heartbeat", object None): all up to their revision
        has been sent. Raises Compacted (HTTP 410: list the view again) or ServerUnavailable
        (unreachable, stream ended, or silent for `idle_timeout` seconds). With
        `standby_for`, the stream also covers that host's networks (see the view).
        """
        import aiohttp

        params = {
            "from": str(from_revision),
            **({"standby_for": standby_for} if standby_for else {}),
        }
        url = f"{self.base_url}/v1/hosts/{_q(host)}/watch"
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=idle_timeout)
        try:
            async with self._open().get(url, params=params, timeout=timeout) as resp:
                self.cluster_id = resp.headers.get(model.CLUSTER_HEADER)
                if resp.status >= 400:
                    _raise_for(resp.status, await resp.read())
                async for line in resp.content:
                    if line.strip():
                        yield WatchEvent.from_dict(json.loads(line))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            tls = describe_tls_error(exc, self.base_url)
            raise ServerUnavailable(
                tls or f"watch of {host} at {self.base_url} broke: {exc or type(exc).__name__}"
            ) from None
        raise ServerUnavailable(f"the server ended the watch stream of {host}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
