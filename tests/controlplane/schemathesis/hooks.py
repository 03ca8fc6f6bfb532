"""schemathesis hooks for the flowkeeper run: NDJSON watch bodies, and a bounded watch."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import schemathesis

WATCH_TIMEOUT_S = 0.3  # the longest watch stream the run opens (the document allows 3600)


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx: Any, response: Any) -> Any:
    """Every line must be a WatchMessage; schemathesis then checks the last one again."""
    lines = [line for line in response.content.decode().split("\n") if line]
    if not lines:
        raise ValueError("empty watch stream: at least the heartbeat after the catch-up")
    doc = ctx.operation.schema.raw_schema
    schema = {"$ref": "#/components/schemas/WatchMessage", "components": doc["components"]}
    validator = jsonschema_rs.validator_for(schema)
    messages = [json.loads(line) for line in lines]
    for number, message in enumerate(messages, 1):
        errors = list(validator.iter_errors(message))
        if errors:
            raise ValueError(f"watch line {number} is not a WatchMessage: {errors[0]}")
    return messages[-1]


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
    """A watch stream without `timeout` never ends: give every one a short timeout, and
    shorten a valid longer one (a negative-mode value is left as it is)."""
    if not case.operation.path.endswith("/watch"):
        return
    query = case.query if isinstance(case.query, dict) else None
    if query is None:
        return
    value = query.get("timeout")
    if value is None or _seconds(value) > WATCH_TIMEOUT_S:
        query["timeout"] = WATCH_TIMEOUT_S


def _seconds(value: object) -> float:
    """A valid `timeout` as the server reads it (numbers arrive as strings too); else -1."""
    if isinstance(value, bool):
        return -1.0
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?", value):
        value = float(value)
    if isinstance(value, int | float) and 0 <= value <= 3600:
        return float(value)
    return -1.0


# Relations between fields that JSON Schema cannot state (port_range_min <= port_range_max,
# a port range only with tcp/udp/icmp, the prefix's family matching the ethertype, ...).
# The document states them in the operations' descriptions and the server answers 400;
# a positive case that breaks one is not valid data, so it is not generated. The rule
# relations are checked by the model itself (the server's own check), not restated here.
RELATION_OPERATIONS = frozenset({"createSecurityGroupRule", "createPort", "updatePort"})


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return True
    if case.operation.definition.raw.get("operationId") not in RELATION_OPERATIONS:
        return True
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return True
    return _relations_hold(case.operation.definition.raw["operationId"], body)


def _relations_hold(operation_id: str, body: dict[str, Any]) -> bool:
    from flowkeeper.model import ValidationError
    from flowkeeper.server.sg_requests import RuleCreate

    if operation_id == "createSecurityGroupRule":
        try:
            RuleCreate.model_validate(body).to_rule("r")
        except ValidationError:
            return False
        except Exception:  # not schema-valid at all: the server's 400 is right
            return True
        return True
    off = body.get("port_security_enabled") is False
    return not (off and (body.get("security_groups") or body.get("allowed_address_pairs")))
