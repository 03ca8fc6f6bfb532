"""REST handlers for security groups and their rules under /v1 (Neutron-shaped), and the
project's default group made on demand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from flowkeeper.cperrors import Conflict, MissingReference, NotFound
from flowkeeper.model import Port, SecurityGroup, SecurityGroupRule
from flowkeeper.model_sg import DEFAULT_GROUP, default_group_rules
from flowkeeper.server import responses as out
from flowkeeper.server.endpoint import Input, endpoint
from flowkeeper.server.requests import PortCreate
from flowkeeper.server.sg_requests import (
    PORT_SECURITY_RELATIONS,
    RULE_RELATIONS,
    GroupCreate,
    GroupList,
    GroupPath,
    GroupsQuery,
    RuleCreate,
    RuleList,
    RuleOut,
    RulePath,
)
from flowkeeper.server.state import STATE, ServerState, principal
from flowkeeper.store.base import Store

routes = web.RouteTableDef()
DEFAULT_DESCRIPTION = "Default security group"

__all__ = [
    "PORT_SECURITY_RELATIONS",
    "create_port_with_groups",
    "default_group",
    "routes",
]


def _st(request: web.Request) -> ServerState:
    return request.app[STATE]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _may_write(request: web.Request) -> bool:
    who = principal(request)
    return who is None or who.role == "admin"


def new_group(spec: GroupCreate) -> SecurityGroup:
    """A new group as Neutron makes one: egress to anywhere (IPv4 and IPv6); the default
    group also ingress from its own members."""
    gid = spec.id or str(uuid.uuid4())
    if spec.name == DEFAULT_GROUP:
        rules = default_group_rules(gid, [str(uuid.uuid4()) for _ in range(4)])
    else:
        rules = (
            SecurityGroupRule(str(uuid.uuid4()), "egress", "IPv4"),
            SecurityGroupRule(str(uuid.uuid4()), "egress", "IPv6"),
        )
    return SecurityGroup(gid, spec.name, spec.project_id, spec.description, rules)


def default_group(store: Store, project_id: str) -> SecurityGroup:
    """The project's default group, made if it has none (another server may make it at
    the same time: then its group is the one)."""
    for _ in range(3):
        found = _find_default(store, project_id)
        if found is not None:
            return found
        spec = GroupCreate(
            name=DEFAULT_GROUP, project_id=project_id, description=DEFAULT_DESCRIPTION, id=None
        )
        try:
            return store.create_security_group(new_group(spec))
        except Conflict:
            continue  # made meanwhile: read it
    raise Conflict(f"project {project_id!r}: its default group keeps changing; try again")


def _find_default(store: Store, project_id: str) -> SecurityGroup | None:
    groups, _ = store.list_security_groups(project_id)
    return next((g for g in groups if g.name == DEFAULT_GROUP), None)


# (store identity, project) -> its default group's id: saves a port create the lookup.
# The store checks the group in the port's create, so a stale entry (the group deleted
# since, or made again with a new id) costs one retry, never a wrong port.
_DEFAULTS: dict[tuple[str, str], str] = {}
_DEFAULTS_MAX = 10_000


def create_port_with_groups(store: Store, spec: PortCreate) -> Port:
    """Neutron's port create: the network's project unless named; no security_groups given
    (and port security on): the project's default group."""
    net = store.get_network(spec.network_id)
    project = spec.project_id or net.project_id
    new_id = str(uuid.uuid4())
    if spec.security_groups is not None or not spec.port_security_enabled:
        return store.create_port(spec.to_port(new_id, project, ()))
    key = (store.cluster_id(), project)
    cached = _DEFAULTS.get(key)
    if cached is not None:
        try:
            return store.create_port(spec.to_port(new_id, project, (cached,)))
        except NotFound as exc:
            if cached not in str(exc):
                raise
            _DEFAULTS.pop(key, None)
    group = default_group(store, project)
    if len(_DEFAULTS) >= _DEFAULTS_MAX:
        _DEFAULTS.clear()
    _DEFAULTS[key] = group.id
    return store.create_port(spec.to_port(new_id, project, (group.id,)))


@contextmanager
def referenced_is_conflict() -> Iterator[None]:
    """On an existing object's path, 404 means that object is gone: a missing object its
    body names is a 409 instead (same one-line message)."""
    try:
        yield
    except MissingReference as exc:
        raise Conflict(str(exc)) from None


def _rule_out(group: SecurityGroup, rule: SecurityGroupRule) -> dict[str, Any]:
    return {**rule.to_dict(), "security_group_id": group.id, "revision": group.revision}


GROUP_LINKS = {
    "GetSecurityGroup": {
        "operationId": "getSecurityGroup",
        "parameters": {"id": "$response.body#/id"},
    },
    "DeleteSecurityGroup": {
        "operationId": "deleteSecurityGroup",
        "parameters": {"id": "$response.body#/id"},
    },
    "CreateSecurityGroupRule": {
        "operationId": "createSecurityGroupRule",
        "parameters": {"id": "$response.body#/id"},
    },
}
RULE_LINKS = {
    "GetSecurityGroupRule": {
        "operationId": "getSecurityGroupRule",
        "parameters": {
            "id": "$response.body#/security_group_id",
            "rule_id": "$response.body#/id",
        },
    },
    "DeleteSecurityGroupRule": {
        "operationId": "deleteSecurityGroupRule",
        "parameters": {
            "id": "$response.body#/security_group_id",
            "rule_id": "$response.body#/id",
        },
    },
}


@endpoint(
    routes,
    method="GET",
    path="/v1/security-groups",
    operation_id="listSecurityGroups",
    summary="list security groups",
    what="security groups",
    ok_status=200,
    ok_type=GroupList,
    query=GroupsQuery,
)
async def list_groups(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    project = inp.query.project_id
    if project is not None and _may_write(request):
        made = await st.db.run(default_group, st.db.store, project)
        await st.hub.settle(made.revision)
    groups, rev = await st.db.run(st.db.store.list_security_groups, project)
    return ok({"revision": rev, "security_groups": [g.to_dict() for g in groups]})


@endpoint(
    routes,
    method="POST",
    path="/v1/security-groups",
    operation_id="createSecurityGroup",
    summary="create a security group (with Neutron's egress-anywhere rules)",
    what="security group",
    ok_status=201,
    ok_type=out.SecurityGroup,
    body=GroupCreate,
    errors=(409,),
    links=GROUP_LINKS,
    description="A new group allows egress to anywhere (IPv4 and IPv6) and no ingress, as "
    'in Neutron. Named "default", it is the project\'s default group (also ingress from its '
    "own members); a project has one (409 for a second).",
)
async def create_group(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    group = await st.db.run(st.db.store.create_security_group, new_group(inp.body))
    await st.hub.settle(group.revision)
    return ok(group.to_dict(), 201)


@endpoint(
    routes,
    method="GET",
    path="/v1/security-groups/{id}",
    operation_id="getSecurityGroup",
    summary="one security group, with its rules",
    what="security group",
    ok_status=200,
    ok_type=out.SecurityGroup,
    path_params=GroupPath,
    errors=(404,),
)
async def get_group(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    group = await st.db.run(st.db.store.get_security_group, inp.path.id)
    return ok(group.to_dict())


@endpoint(
    routes,
    method="DELETE",
    path="/v1/security-groups/{id}",
    operation_id="deleteSecurityGroup",
    summary="delete a security group no port uses",
    what="security group",
    ok_status=200,
    ok_type=out.Deleted,
    path_params=GroupPath,
    errors=(404, 409),
    description="409 while a port uses the group, or a rule of another group names it as "
    "remote_group_id.",
)
async def delete_group(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    group = await st.db.run(st.db.store.delete_security_group, inp.path.id)
    revision = await st.hub.settle_delete()
    return ok({"deleted": group.id, "revision": revision})


@endpoint(
    routes,
    method="GET",
    path="/v1/security-groups/{id}/rules",
    operation_id="listSecurityGroupRules",
    summary="a security group's rules",
    what="security group rules",
    ok_status=200,
    ok_type=RuleList,
    path_params=GroupPath,
    errors=(404,),
)
async def list_rules(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    group = await st.db.run(st.db.store.get_security_group, inp.path.id)
    rules = [_rule_out(group, r) for r in group.rules]
    return ok({"revision": group.revision, "security_group_rules": rules})


@endpoint(
    routes,
    method="POST",
    path="/v1/security-groups/{id}/rules",
    operation_id="createSecurityGroupRule",
    summary="add a rule to a security group",
    what="security group rule",
    ok_status=201,
    ok_type=RuleOut,
    path_params=GroupPath,
    body=RuleCreate,
    errors=(404, 409),
    links=RULE_LINKS,
    description=f"{RULE_RELATIONS} 409: the group has the same rule already, or the "
    "remote group does not exist (or is of another project). 404: no such group.",
)
async def create_rule(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    spec: RuleCreate = inp.body
    rule = spec.to_rule(str(uuid.uuid4()))
    with referenced_is_conflict():
        group = await st.db.run(st.db.store.add_security_group_rule, inp.path.id, rule)
    await st.hub.settle(group.revision)
    stored = group.rule(rule.id)
    assert stored is not None
    return ok(_rule_out(group, stored), 201)


@endpoint(
    routes,
    method="GET",
    path="/v1/security-groups/{id}/rules/{rule_id}",
    operation_id="getSecurityGroupRule",
    summary="one rule of a security group",
    what="security group rule",
    ok_status=200,
    ok_type=RuleOut,
    path_params=RulePath,
    errors=(404,),
)
async def get_rule(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    group = await st.db.run(st.db.store.get_security_group, inp.path.id)
    rule = group.rule(inp.path.rule_id)
    if rule is None:
        raise NotFound(f"rule {inp.path.rule_id!r} not found in security group {group.id!r}")
    return ok(_rule_out(group, rule))


@endpoint(
    routes,
    method="DELETE",
    path="/v1/security-groups/{id}/rules/{rule_id}",
    operation_id="deleteSecurityGroupRule",
    summary="delete a rule of a security group",
    what="security group rule",
    ok_status=200,
    ok_type=out.Deleted,
    path_params=RulePath,
    errors=(404,),
)
async def delete_rule(request: web.Request, inp: Input) -> web.Response:
    st = _st(request)
    path = inp.path
    group = await st.db.run(st.db.store.delete_security_group_rule, path.id, path.rule_id)
    await st.hub.settle(group.revision)
    return ok({"deleted": path.rule_id, "revision": group.revision})
