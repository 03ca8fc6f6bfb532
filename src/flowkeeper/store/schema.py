"""The SQLite store's tables: objects as JSON plus the columns that carry unique constraints."""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        segmentation_id INTEGER NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (type, segmentation_id))""",
    """CREATE TABLE IF NOT EXISTS ports (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL REFERENCES networks (id),
        host TEXT NOT NULL,
        mac TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (network_id, mac))""",
    "CREATE INDEX IF NOT EXISTS ports_by_host ON ports (host)",
    """CREATE TABLE IF NOT EXISTS port_ips (
        network_id TEXT NOT NULL REFERENCES networks (id),
        ip TEXT NOT NULL,
        port_id TEXT NOT NULL REFERENCES ports (id),
        PRIMARY KEY (network_id, ip))""",
    "CREATE INDEX IF NOT EXISTS port_ips_by_port ON port_ips (port_id)",
    "CREATE TABLE IF NOT EXISTS hosts (name TEXT PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS events (
        revision INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        op TEXT NOT NULL,
        id TEXT NOT NULL,
        object TEXT NOT NULL,
        prev TEXT)""",
    # When each host's current run of heartbeats began (its "alive since"): liveness, not
    # an object (no events). A store made before this table gets it at its next open.
    """CREATE TABLE IF NOT EXISTS host_liveness (
        name TEXT PRIMARY KEY,
        alive_since REAL NOT NULL)""",
    # API tokens: not revisioned objects (no events); data holds only the secret's hash.
    "CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, data TEXT NOT NULL)",
    # Security groups (rules inside data). Tables added after schema 1 was made: a store
    # made before them gets them at its next open, empty, as its ports have no groups.
    """CREATE TABLE IF NOT EXISTS security_groups (
        id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_default_group
        ON security_groups (project_id) WHERE name = 'default'""",
    # Which ports use a group, and which groups' rules name a group as remote: the
    # delete_security_group refusals.
    """CREATE TABLE IF NOT EXISTS port_groups (
        group_id TEXT NOT NULL REFERENCES security_groups (id),
        port_id TEXT NOT NULL REFERENCES ports (id),
        PRIMARY KEY (group_id, port_id))""",
    "CREATE INDEX IF NOT EXISTS port_groups_by_port ON port_groups (port_id)",
    """CREATE TABLE IF NOT EXISTS group_refs (
        remote_id TEXT NOT NULL REFERENCES security_groups (id),
        group_id TEXT NOT NULL REFERENCES security_groups (id),
        PRIMARY KEY (remote_id, group_id))""",
)
