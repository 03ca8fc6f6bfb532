"""The etcd store's security groups: one key per group (rules inside), one transaction
(one revision, one event) per change.

Integrity by compares, as for networks and ports: a group named "default" takes the
project's idx/sgdefault key (create-only); a port using a group holds idx/sgport/G/P
and a group whose rules name remote R holds idx/sgref/R/G, so a delete compares
"nothing under them"; and a write that relies on a group existing compares that group
key's create_revision (deleted, or deleted and made again, fails the compare)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from flowkeeper.model import SecurityGroup, SecurityGroupRule
from flowkeeper.store import sgcheck
from flowkeeper.store.base import Conflict, NotFound
from flowkeeper.store.etcd_keys import Keys, decode_value, encode_value
from flowkeeper.store.etcd_txn import (
    KV,
    absent,
    created_at,
    delete,
    get,
    none_under,
    put,
    scan,
    unchanged,
)

T = TypeVar("T")


def group_of(item: KV) -> SecurityGroup:
    obj = decode_value("security_group", item.value, item.mod_revision)
    assert isinstance(obj, SecurityGroup)
    return obj


class EtcdSecurityGroups:
    """The security-group half of EtcdStore (it supplies keys, _read, _write, ...)."""

    keys: Keys

    if TYPE_CHECKING:

        def _write(self, attempt: Callable[[Any, bool], Awaitable[T]]) -> T: ...

        def _read(self, fn: Callable[[Any], Awaitable[T]]) -> T: ...

        async def _commit(self, kv: Any, compare: list[Any], ops: list[Any]) -> int: ...

        async def _gets(self, kv: Any, *keys: bytes) -> list[KV | None]: ...

    async def read_groups(
        self, kv: Any, ids: Iterable[str]
    ) -> tuple[dict[str, SecurityGroup | None], list[Any]]:
        """The groups (None: absent) and the compares that they are still those groups."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}, []
        found = await self._gets(kv, *(self.keys.obj("security_group", g) for g in wanted))
        groups: dict[str, SecurityGroup | None] = {}
        compares = []
        for gid, item in zip(wanted, found, strict=True):
            groups[gid] = None if item is None else group_of(item)
            if item is not None:
                compares.append(created_at(item.key, item.create_revision))
        return groups, compares

    async def _group(self, kv: Any, group_id: str) -> tuple[SecurityGroup, KV]:
        item = await get(kv, self.keys.obj("security_group", group_id))
        if item is None:
            raise NotFound(f"security group {group_id!r} not found")
        return group_of(item), item

    def get_security_group(self, group_id: str) -> SecurityGroup:
        async def read(kv: Any) -> SecurityGroup:
            return (await self._group(kv, group_id))[0]

        return self._read(read)

    def create_security_group(self, group: SecurityGroup) -> SecurityGroup:
        keys = self.keys
        key = keys.obj("security_group", group.id)
        stored = replace(group, revision=0)
        default = keys.sg_default(group.project_id) if group.name == sgcheck.DEFAULT_GROUP else None

        async def attempt(kv: Any, ambiguous: bool) -> SecurityGroup:
            mine, by_default = await self._gets(kv, key, default or key)
            if mine is not None:
                old = group_of(mine)
                if ambiguous and replace(old, revision=0) == stored:
                    return old  # our own write, whose answer was lost
                raise Conflict(f"security group id {group.id!r} already exists")
            if default is not None and by_default is not None:
                raise Conflict(
                    f"project {group.project_id!r} already has its default group "
                    f"{by_default.value.decode()!r}"
                )
            remotes, compares = await self.read_groups(kv, sgcheck.other_remotes(group))
            sgcheck.check_remotes(group, remotes)
            ops = [put(key, encode_value(stored))]
            ops += [put(keys.sg_refs(r) + group.id.encode()) for r in remotes]
            compares.append(absent(key))
            if default is not None:
                compares.append(absent(default))
                ops.append(put(default, group.id.encode()))
            rev = await self._commit(kv, compares, ops)
            return replace(stored, revision=rev)

        return self._write(attempt)

    def delete_security_group(self, group_id: str) -> SecurityGroup:
        keys = self.keys
        seen: list[SecurityGroup] = []

        async def attempt(kv: Any, ambiguous: bool) -> SecurityGroup:
            try:
                group, item = await self._group(kv, group_id)
            except NotFound:
                if ambiguous and seen:
                    return seen[-1]  # our delete went through; its answer was lost
                raise
            users, _ = await scan(kv, keys.sg_ports(group_id), keys_only=True)
            refs, _ = await scan(kv, keys.sg_refs(group_id), keys_only=True)
            sgcheck.in_use(
                group,
                [keys.last_part(u.key) for u in users],
                [keys.last_part(r.key) for r in refs],
            )
            seen.append(group)
            ops = [delete(item.key)]
            ops += [
                delete(keys.sg_refs(r) + group.id.encode()) for r in sgcheck.other_remotes(group)
            ]
            if group.name == sgcheck.DEFAULT_GROUP:
                ops.append(delete(keys.sg_default(group.project_id)))
            compares = [
                unchanged(item.key, item.mod_revision),
                none_under(keys.sg_ports(group_id)),
                none_under(keys.sg_refs(group_id)),
            ]
            await self._commit(kv, compares, ops)
            return group

        return self._write(attempt)

    def add_security_group_rule(self, group_id: str, rule: SecurityGroupRule) -> SecurityGroup:
        keys = self.keys

        async def attempt(kv: Any, ambiguous: bool) -> SecurityGroup:
            group, item = await self._group(kv, group_id)
            if ambiguous and group.rule(rule.id) == rule:
                return group  # our own write, whose answer was lost
            new = sgcheck.with_rule(group, rule)
            remotes, compares = await self.read_groups(kv, sgcheck.other_remotes(new))
            sgcheck.check_remotes(new, remotes)
            ops = [put(item.key, encode_value(new))]
            added = sgcheck.other_remotes(new) - sgcheck.other_remotes(group)
            ops += [put(keys.sg_refs(r) + group.id.encode()) for r in sorted(added)]
            rev = await self._commit(kv, [unchanged(item.key, item.mod_revision), *compares], ops)
            return replace(new, revision=rev)

        return self._write(attempt)

    def delete_security_group_rule(self, group_id: str, rule_id: str) -> SecurityGroup:
        keys = self.keys
        seen: list[SecurityGroup] = []

        async def attempt(kv: Any, ambiguous: bool) -> SecurityGroup:
            group, item = await self._group(kv, group_id)
            if ambiguous and seen and group.rule(rule_id) is None:
                return group
            new = sgcheck.without_rule(group, rule_id)
            seen.append(new)
            ops = [put(item.key, encode_value(new))]
            gone = sgcheck.other_remotes(group) - sgcheck.other_remotes(new)
            ops += [delete(keys.sg_refs(r) + group.id.encode()) for r in sorted(gone)]
            rev = await self._commit(kv, [unchanged(item.key, item.mod_revision)], ops)
            return replace(new, revision=rev)

        return self._write(attempt)
