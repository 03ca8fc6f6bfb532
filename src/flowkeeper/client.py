"""API clients: `Client` (sync, urllib) for the CLI, `AsyncClient` (aiohttp) for agents.

Both take one server URL or several (`URL1,URL2,...`, or a list) and fail over: a request
that could not reach its server, or was answered 503, goes to the next one, after a short
jittered backoff (see flowkeeper.failover), unless it may have been applied already and is
not idempotent (then MaybeApplied; creates check by id whether they were applied).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowkeeper import client_sg as sg
from flowkeeper import model
from flowkeeper.cperrors import Compacted
from flowkeeper.errors import FlowkeeperError, UsageError
from flowkeeper.failover import (
    AGENT_BACKOFF,
    CLI_BACKOFF,
    Backoff,
    Budget,
    ServerPool,
    cli_budget,
    parse_servers,
    retry_safe,
)
from flowkeeper.model import (
    DEFAULT_PROJECT,
    AddressPair,
    Host,
    Network,
    Port,
    PortStatus,
    SecurityGroup,
    SecurityGroupRule,
    View,
    WatchEvent,
)
from flowkeeper.tlsconf import client_context, describe_tls_error, resolve_ca
from flowkeeper.validation import check_cidr

if TYPE_CHECKING:  # aiohttp is imported when an AsyncClient first needs it
    import aiohttp

__all__ = [
    "DEFAULT_SERVER",
    "ApiError",
    "AsyncClient",
    "Client",
    "Compacted",
    "Event",
    "MaybeApplied",
    "ServerUnavailable",
    "resolve_ca",
    "resolve_server",
    "resolve_servers",
    "resolve_token",
]

log = logging.getLogger("flowkeeper.failover")

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

    def __init__(self, message: str, sent: bool = False) -> None:
        super().__init__(message)
        # The request may have reached a server (it broke after it was written).
        self.sent = sent


class MaybeApplied(ServerUnavailable):
    """A write that is not idempotent broke after it was sent: it may have been applied,
    so it was not sent again."""


def resolve_servers(
    server: str | Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """--server URL[,URL...], else $FLOWKEEPER_SERVER (the same list), else
    http://127.0.0.1:9696; every URL checked (UsageError, one line)."""
    env = os.environ if env is None else env
    return parse_servers(server or env.get("FLOWKEEPER_SERVER") or DEFAULT_SERVER)


def resolve_server(
    server: str | Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> str:
    """As resolve_servers, joined with commas (what Client and AsyncClient take)."""
    return ",".join(resolve_servers(server, env))


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


def _unreachable(exc: BaseException, base_url: str, sent: bool = False) -> ServerUnavailable:
    tls = describe_tls_error(exc, base_url)
    if tls is not None:
        return ServerUnavailable(tls, sent)
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    if sent:
        return ServerUnavailable(f"connection to the server at {base_url} broke: {reason}", sent)
    return ServerUnavailable(f"cannot reach the server at {base_url}: {reason}", sent)


def _gave_up(last: FlowkeeperError, tried: Sequence[str]) -> FlowkeeperError:
    """The error to raise when no server answered: the last one's, naming all tried."""
    if len(set(tried)) <= 1:
        return last
    servers = ", ".join(dict.fromkeys(tried))
    if isinstance(last, ApiError):
        return ApiError(f"{last.message} (every server tried: {servers})", last.status)
    return ServerUnavailable(
        f"{last} (every server tried: {servers})", getattr(last, "sent", False)
    )


def _maybe_applied(method: str, path: str, exc: ServerUnavailable) -> MaybeApplied:
    return MaybeApplied(
        f"{exc}; {method} {path} may have been applied, so it was not sent again: "
        "check before repeating it",
        sent=True,
    )


Attempt = tuple[int, bytes] | ServerUnavailable  # (status, body), or no answer


@dataclass(frozen=True)
class Retry:
    """An attempt that failed: `final` means give up with `failure` now (a write that may
    have been applied); otherwise another server may be tried."""

    failure: FlowkeeperError
    final: bool


def judge(method: str, path: str, attempt: Attempt) -> Any:
    """What one attempt of a request comes to, for the sync and async clients alike: the
    decoded answer, a Retry, or the API error raised (a 4xx, a 5xx but 503)."""
    if isinstance(attempt, ServerUnavailable):
        if not retry_safe(method, attempt.sent):
            return Retry(_maybe_applied(method, path, attempt), final=True)
        return Retry(attempt, final=False)
    status, raw = attempt
    if status != 503:
        _raise_for(status, raw)
        return json.loads(raw) if raw else None
    failure = _error_message(status, raw)
    if retry_safe(method, True):
        return Retry(failure, final=False)
    # A 503 to a write does not say it was not applied: the store may have committed it
    # and lost the answer (etcd without a quorum within the deadline).
    return Retry(_maybe_applied(method, path, ServerUnavailable(str(failure), True)), final=True)


def _moved(pool: ServerPool, url: str, reason: object, level: int) -> None:
    """`url` failed: move the pool on, one log line naming both servers."""
    new = pool.failed(url)
    if new is not None and new != url:
        log.log(level, "server %s unavailable (%s): failing over to %s", url, reason, new)


def _same_port(port: Port, body: Mapping[str, Any]) -> bool:
    want = Port(
        id=port.id,
        network_id=body["network_id"],
        host=body["host"],
        mac=body["mac"],
        fixed_ips=tuple(body["fixed_ips"]),
        name=body["name"],
        device_id=body["device_id"],
    )
    return (port.network_id, port.host, port.mac, port.fixed_ips, port.name, port.device_id) == (
        want.network_id,
        want.host,
        want.mac,
        want.fixed_ips,
        want.name,
        want.device_id,
    )


def _same_network(net: Network, body: Mapping[str, Any]) -> bool:
    return (
        net.name == body["name"]
        and net.type == body["type"]
        and body.get("segmentation_id") in (None, net.segmentation_id)
        and (body.get("cidr") is None or net.cidr == check_cidr(body["cidr"]))
    )


class Client:
    """Synchronous client for the CLI and tests (urllib; no extra dependency).

    `base_url`: one server URL or several (`URL1,URL2,...` or a list); with several, a
    request that cannot reach its server goes to the next (see the module's doc), within
    `budget` (default: each server twice, 30 s). With https URLs, the servers'
    certificates are checked against `ca` (a PEM file) or, without it, the system's CAs."""

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_SERVER,
        token: str | None = None,
        timeout: float = 30.0,
        ca: str | Path | None = None,
        *,
        budget: Budget | None = None,
        backoff: Backoff = CLI_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.pool = ServerPool(parse_servers(base_url or DEFAULT_SERVER))
        self.token = token
        self.timeout = timeout
        self.tls = _tls(self.pool.current, ca)
        self.budget = budget or cli_budget(len(self.pool))
        self.backoff = backoff
        self._sleep = sleep
        self._rand = rand

    @property
    def base_url(self) -> str:
        """The server in use now."""
        return self.pool.current

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str | None] | None = None,
    ) -> Any:
        """One API call (to the first server that answers); the decoded JSON answer."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        started = time.monotonic()
        tried: list[str] = []
        while True:
            server = self.pool.current
            tried.append(server)
            try:
                attempt: Attempt = self._send(server, method, target, data)
            except ServerUnavailable as exc:
                attempt = exc
            verdict = judge(method, path, attempt)
            if not isinstance(verdict, Retry):
                return verdict
            failure = verdict.failure
            if verdict.final:  # a write the server may have begun: not sent again
                _moved(self.pool, server, failure, logging.INFO)  # the next call goes on
                raise failure
            if not self.budget.allows(len(tried), time.monotonic() - started):
                raise _gave_up(failure, tried)
            _moved(self.pool, server, failure, logging.INFO)
            self._sleep(self.backoff.delay(len(tried), self._rand))

    def _send(self, server: str, method: str, target: str, data: bytes | None) -> tuple[int, bytes]:
        """(status, body) of one attempt; ServerUnavailable (with `sent`) if none came."""
        req = urllib.request.Request(server + target, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(  # noqa: S310 - http(s) only
                req, timeout=self.timeout, context=self.tls
            ) as resp:
                return 200, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            # urllib wraps what fails while connecting and sending: the request did not
            # get to the server whole, so it cannot have been applied.
            raise _unreachable(exc, server) from None
        except (OSError, http.client.HTTPException) as exc:
            # Sent; the answer did not come (reset, closed, timed out, cut short).
            raise _unreachable(exc, server, sent=True) from None

    def _create(self, path: str, body: dict[str, Any], same: Callable[[Any], bool]) -> Any:
        """POST a create whose id the client chose. If the answer is lost (MaybeApplied,
        or a 503: the server may have begun it), look the id up: there and equal to what
        was asked, it was this create; absent, it was not applied: send it again, to the
        next server, at most once per server and within the budget's time."""
        started = time.monotonic()
        last: FlowkeeperError | None = None
        for attempt in range(len(self.pool)):
            if attempt and time.monotonic() - started >= self.budget.seconds:
                break
            try:
                return self.request("POST", path, body)
            except MaybeApplied as exc:
                last = exc
            except ApiError as exc:
                # A 409 after a lost answer: maybe that earlier attempt landed after all.
                if exc.status != 503 and not (exc.status == 409 and last is not None):
                    raise
                last = exc
            try:
                found = self.request("GET", f"{path}/{_q(body['id'])}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
                if isinstance(last, ApiError) and last.status == 409:
                    raise last from None  # a real conflict, not our earlier attempt
                continue  # not applied: create it again
            if same(found):
                return found
            what = path.rsplit("/", 1)[-1].removesuffix("s")
            raise ApiError(f"{what} id {body['id']!r} already exists", 409)
        assert last is not None
        raise last

    # networks
    def create_network(
        self,
        name: str,
        type: str = "vxlan",
        segmentation_id: int | None = None,
        cidr: str | None = None,
        id: str | None = None,
        *,
        project_id: str | None = None,
    ) -> Network:
        body: dict[str, Any] = {"name": name, "type": type, "id": id or str(uuid.uuid4())}
        if project_id is not None:
            body["project_id"] = project_id
        for key, value in (("segmentation_id", segmentation_id), ("cidr", cidr)):
            if value is not None:
                body[key] = value

        def same(found: Any) -> bool:
            return _same_network(Network.from_dict(found), body)

        return Network.from_dict(self._create("/v1/networks", body, same))

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
        project_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        port_security_enabled: bool = True,
        allowed_address_pairs: Sequence[AddressPair] = (),
    ) -> Port:
        """`security_groups` None: the project's default group (with port security on);
        [] no group (all the port's traffic is dropped)."""
        body = _port_body(
            network_id,
            host,
            mac,
            fixed_ips,
            name=name,
            device_id=device_id,
            port_id=id or str(uuid.uuid4()),
        )
        body |= sg.port_security_fields(
            project_id, security_groups, port_security_enabled, allowed_address_pairs
        )

        def same(found: Any) -> bool:
            return _same_port(Port.from_dict(found), body)

        return Port.from_dict(self._create("/v1/ports", body, same))

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

    def update_port(
        self,
        port_id: str,
        *,
        security_groups: Sequence[str] | None = None,
        port_security_enabled: bool | None = None,
        allowed_address_pairs: Sequence[AddressPair] | None = None,
    ) -> Port:
        """Change a port's security fields (None: keep)."""
        body = sg.port_update_body(security_groups, port_security_enabled, allowed_address_pairs)
        return Port.from_dict(self.request("PATCH", f"/v1/ports/{_q(port_id)}", body))

    # security groups
    def create_security_group(
        self,
        name: str,
        *,
        description: str = "",
        project_id: str = DEFAULT_PROJECT,
        id: str | None = None,
    ) -> SecurityGroup:
        body = sg.group_body(name, description, project_id, id or str(uuid.uuid4()))

        def same(found: Any) -> bool:
            return sg.same_group(found, body)

        return SecurityGroup.from_dict(self._create("/v1/security-groups", body, same))

    def list_security_groups(self, project_id: str | None = None) -> list[SecurityGroup]:
        """All groups, or a project's (then its default group is made if it has none)."""
        data = self.request("GET", "/v1/security-groups", query={"project_id": project_id})
        return [SecurityGroup.from_dict(g) for g in data["security_groups"]]

    def get_security_group(self, group_id: str) -> SecurityGroup:
        return SecurityGroup.from_dict(self.request("GET", f"/v1/security-groups/{_q(group_id)}"))

    def find_security_group(self, name_or_id: str, project_id: str | None = None) -> SecurityGroup:
        """A group by id, or else by name (in `project_id`, if given): 409 if several."""
        groups = self.list_security_groups(project_id)
        for group in groups:
            if group.id == name_or_id:
                return group
        named = [g for g in groups if g.name == name_or_id]
        if len(named) > 1:
            projects = sorted({g.project_id for g in named})
            raise ApiError(
                f"{len(named)} security groups are named {name_or_id!r} (projects "
                f"{', '.join(projects)}): give the id, or the project",
                409,
            )
        if not named:
            raise ApiError(f"security group {name_or_id!r} not found", 404)
        return named[0]

    def delete_security_group(self, group_id: str) -> int:
        """Returns the revision of the delete."""
        path = f"/v1/security-groups/{_q(group_id)}"
        return int(self.request("DELETE", path)["revision"])

    def create_security_group_rule(
        self, group_id: str, rule: SecurityGroupRule | None = None, **fields: Any
    ) -> SecurityGroupRule:
        """Add `rule` (or one made of `fields`: direction, ethertype, protocol, ...; a new
        id) to the group; the stored rule (normalised as the server does)."""
        if rule is None:
            rule = SecurityGroupRule(fields.pop("id", None) or str(uuid.uuid4()), **fields)
        body = sg.rule_body(rule)
        path = f"/v1/security-groups/{_q(group_id)}/rules"
        return sg.rule_from(self._create(path, body, lambda found: sg.same_rule(found, rule)))

    def list_security_group_rules(self, group_id: str) -> list[SecurityGroupRule]:
        data = self.request("GET", f"/v1/security-groups/{_q(group_id)}/rules")
        return [sg.rule_from(r) for r in data["security_group_rules"]]

    def delete_security_group_rule(self, group_id: str, rule_id: str) -> int:
        path = f"/v1/security-groups/{_q(group_id)}/rules/{_q(rule_id)}"
        return int(self.request("DELETE", path)["revision"])

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
    """Asynchronous client for agents: registration, list (view) + watch, port status.

    `base_url`: one server URL or several (`URL1,URL2,...` or a list); `start` picks the
    first one used (e.g. failover.start_index(host, n), to spread agents). A request that
    cannot reach its server goes to the next one, once round the list (the agent's own
    loops retry for ever); a broken watch moves the client to the next server, so the
    heartbeat and the status reports follow it."""

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_SERVER,
        token: str | None = None,
        timeout: float = 30.0,
        ca: str | Path | None = None,
        *,
        start: int = 0,
        backoff: Backoff = AGENT_BACKOFF,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.pool = ServerPool(parse_servers(base_url or DEFAULT_SERVER), start)
        self.token = token
        self.timeout = timeout
        self.tls = _tls(self.pool.current, ca)
        self.backoff = backoff
        self._rand = rand
        self._session: aiohttp.ClientSession | None = None
        # The server's store identity, from the last response (None: not sent).
        self.cluster_id: str | None = None

    @property
    def base_url(self) -> str:
        """The server in use now."""
        return self.pool.current

    def failed(self, url: str, reason: object) -> None:
        """`url` failed (e.g. its watch broke): use the next server from now on."""
        _moved(self.pool, url, reason, logging.WARNING)

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
        """One API call, to the first server that answers (each tried at most once)."""
        tried: list[str] = []
        while True:
            server = self.pool.current
            tried.append(server)
            try:
                attempt: Attempt = await self._send(server, method, path, body)
            except ServerUnavailable as exc:
                attempt = exc
            verdict = judge(method, path, attempt)
            if not isinstance(verdict, Retry):
                return verdict
            failure = verdict.failure
            if verdict.final:
                self.failed(server, failure)
                raise failure
            if len(tried) >= len(self.pool):
                raise _gave_up(failure, tried)
            self.failed(server, failure)
            await asyncio.sleep(self.backoff.delay(len(tried), self._rand))

    async def _send(self, server: str, method: str, path: str, body: Any) -> tuple[int, bytes]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self._open().request(
                method, server + path, json=body, timeout=timeout
            ) as resp:
                raw = await resp.read()
                self.cluster_id = resp.headers.get(model.CLUSTER_HEADER)
                return resp.status, raw
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _unreachable(exc, server) from None  # never connected: not sent
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _unreachable(exc, server, sent=True) from None

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

    async def view(self, host: str) -> View:
        data = await self.request("GET", f"/v1/hosts/{_q(host)}/view")
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
        project_id: str | None = None,
        security_groups: Sequence[str] | None = None,
        port_security_enabled: bool = True,
        allowed_address_pairs: Sequence[AddressPair] = (),
    ) -> Port:
        body = _port_body(
            network_id, host, mac, fixed_ips, name=name, device_id=device_id, port_id=id
        )
        body |= sg.port_security_fields(
            project_id, security_groups, port_security_enabled, allowed_address_pairs
        )
        return Port.from_dict(await self.request("POST", "/v1/ports", body))

    async def update_port(
        self,
        port_id: str,
        *,
        security_groups: Sequence[str] | None = None,
        port_security_enabled: bool | None = None,
        allowed_address_pairs: Sequence[AddressPair] | None = None,
    ) -> Port:
        body = sg.port_update_body(security_groups, port_security_enabled, allowed_address_pairs)
        return Port.from_dict(await self.request("PATCH", f"/v1/ports/{_q(port_id)}", body))

    async def create_security_group(
        self,
        name: str,
        *,
        description: str = "",
        project_id: str = DEFAULT_PROJECT,
        id: str | None = None,
    ) -> SecurityGroup:
        body = sg.group_body(name, description, project_id, id or str(uuid.uuid4()))
        return SecurityGroup.from_dict(await self.request("POST", "/v1/security-groups", body))

    async def list_security_groups(self, project_id: str | None = None) -> list[SecurityGroup]:
        query = f"?project_id={_q(project_id)}" if project_id else ""
        data = await self.request("GET", f"/v1/security-groups{query}")
        return [SecurityGroup.from_dict(g) for g in data["security_groups"]]

    async def get_security_group(self, group_id: str) -> SecurityGroup:
        data = await self.request("GET", f"/v1/security-groups/{_q(group_id)}")
        return SecurityGroup.from_dict(data)

    async def delete_security_group(self, group_id: str) -> int:
        data = await self.request("DELETE", f"/v1/security-groups/{_q(group_id)}")
        return int(data["revision"])

    async def create_security_group_rule(
        self, group_id: str, rule: SecurityGroupRule
    ) -> SecurityGroupRule:
        path = f"/v1/security-groups/{_q(group_id)}/rules"
        return sg.rule_from(await self.request("POST", path, sg.rule_body(rule)))

    async def delete_security_group_rule(self, group_id: str, rule_id: str) -> int:
        path = f"/v1/security-groups/{_q(group_id)}/rules/{_q(rule_id)}"
        return int((await self.request("DELETE", path))["revision"])

    async def delete_port(self, port_id: str) -> int:
        return int((await self.request("DELETE", f"/v1/ports/{_q(port_id)}"))["revision"])

    async def watch(
        self, host: str, from_revision: int, idle_timeout: float = 30.0
    ) -> AsyncIterator[WatchEvent]:
        """Every message for `host` after `from_revision`, then live ones, forever.

        Heartbeats are yielded too (kind "heartbeat", object None): all up to their revision
        has been sent. Raises Compacted (HTTP 410: list the view again) or ServerUnavailable
        (unreachable, stream ended, a 503, or silent for `idle_timeout` seconds; the
        client has then moved on to the next server).
        """
        import aiohttp

        params = {"from": str(from_revision)}
        server = self.pool.current
        url = f"{server}/v1/hosts/{_q(host)}/watch"
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=idle_timeout)
        try:
            async with self._open().get(url, params=params, timeout=timeout) as resp:
                self.cluster_id = resp.headers.get(model.CLUSTER_HEADER)
                if resp.status == 503:
                    raise _error_message(resp.status, await resp.read())
                if resp.status >= 400:
                    _raise_for(resp.status, await resp.read())
                async for line in resp.content:
                    if line.strip():
                        yield WatchEvent.from_dict(json.loads(line))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            tls = describe_tls_error(exc, server)
            message = tls or f"watch of {host} at {server} broke: {exc or type(exc).__name__}"
            self.failed(server, message)
            raise ServerUnavailable(message) from None
        except ApiError as exc:
            if exc.status != 503:
                raise
            self.failed(server, exc)
            raise ServerUnavailable(f"watch of {host} at {server}: {exc}") from None
        self.failed(server, "it ended the watch stream")
        raise ServerUnavailable(f"the server {server} ended the watch stream of {host}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
