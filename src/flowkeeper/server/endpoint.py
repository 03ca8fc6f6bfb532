"""One registry of /v1 operations: each names its types, which validate it and describe it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Annotated, Any, Literal, get_args, get_origin

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticError
from pydantic.fields import FieldInfo

from flowkeeper.server.requests import PATTERN_HINTS, NoParams, parse_json, query_dict
from flowkeeper.validation import ValidationError


@dataclass(frozen=True)
class Input:
    """A request that passed its types: the body, path and query as validated values."""

    body: Any
    path: Any
    query: Any


Handler = Callable[[web.Request, Input], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    """What the document says about one method on one path, and what the server checks."""

    method: str
    path: str
    operation_id: str
    summary: str
    what: str  # the noun error messages start with ("network", "port status", ...)
    ok_status: int
    ok_type: Any  # a pydantic type, or None for no schema
    body: Any = None
    path_params: type[BaseModel] = NoParams
    query: type[BaseModel] = NoParams
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    description: str = ""
    links: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)

    def adapter(self) -> TypeAdapter[Any]:
        return _adapter(self.body)

    def union_tags(self) -> frozenset[str]:
        return union_tags(self.body)


NO_TAGS: frozenset[str] = frozenset()


def union_tags(kind: Any) -> frozenset[str]:
    """The tags of a discriminated union (Annotated[A | B, Field(discriminator=...)])."""
    if get_origin(kind) is not Annotated:
        return NO_TAGS
    union, *meta = get_args(kind)
    field = next((m.discriminator for m in meta if isinstance(m, FieldInfo)), None)
    if not isinstance(field, str):
        return NO_TAGS
    tags: set[str] = set()
    for member in get_args(union):
        info = member.model_fields.get(field)
        if info is not None and get_origin(info.annotation) is Literal:
            tags.update(str(t) for t in get_args(info.annotation))
    return frozenset(tags)


OPERATIONS: list[Operation] = []
_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    key = id(kind)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(kind)
    return _ADAPTERS[key]


def endpoint(routes: web.RouteTableDef, **spec: Any) -> Callable[[Handler], Handler]:
    """Register an operation: aiohttp route + document entry + input validation.

    The handler gets the request and an `Input` whose body, path and query are instances
    of `body`, `path_params` and `query`; anything else was refused with a 400 first.
    """
    op = Operation(**spec)
    if any((o.method, o.path) == (op.method, op.path) for o in OPERATIONS):
        raise ValueError(f"{op.method} {op.path} registered twice")
    OPERATIONS.append(op)

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            return await handler(request, await parse_input(op, request))

        routes.route(op.method, op.path)(wrapper)
        return handler

    return decorate


async def parse_input(op: Operation, request: web.Request) -> Input:
    path = validate(op.path_params, dict(request.match_info), op.what, "path parameter")
    items = list(request.query.items())
    query = validate(op.query, query_dict(request.query, items), op.what, "query parameter")
    body = None
    if op.body is not None:
        data = parse_json(await request.read())
        try:
            body = op.adapter().validate_python(data, strict=True)
        except PydanticError as exc:
            raise ValidationError(describe(exc, op.what, union_tags=op.union_tags())) from None
    return Input(body, path, query)


def validate(model: type[BaseModel], data: dict[str, str], what: str, kind: str) -> Any:
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(describe(exc, what, kind)) from None


def describe(
    exc: PydanticError, what: str, field_name: str = "field", union_tags: frozenset[str] = NO_TAGS
) -> str:
    """The first error as one line: 'network: segmentation_id: must be <= 16777215 for vxlan'."""
    err = exc.errors(include_url=False)[0]
    loc = [str(part) for part in err["loc"]]
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    tag = ""
    if loc and loc[0] in union_tags:
        tag, loc = loc[0], loc[1:]  # the discriminated union's branch
    if kind == "missing":
        return f"{what}: missing {field_name} {loc[-1]!r}"
    if kind == "extra_forbidden":
        return f"{what}: unknown {field_name} {loc[-1]!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{what}: must be a JSON object, got {_json_type(value)}"
    field = str(ctx.get("discriminator", "")).strip("'")
    if kind == "union_tag_not_found":
        return f"{what}: missing field {field!r}"
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"{what}: {field}: bad value {_show(ctx.get('tag'))}: use {expected}"
    text = _message(kind, ctx, value, f" for {tag}" if tag else "")
    place = ": ".join(p for p in loc if not p.startswith("function-")) or "value"
    return f"{what}: {place}: {text}"


def _message(kind: str, ctx: dict[str, Any], value: object, tag: str) -> str:
    simple = {
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "bool_type": "must be true or false",
        "float_type": "must be a number",
        "list_type": "must be a list",
        "int_parsing": "must be a whole number",
        "float_parsing": "must be a number",
    }
    if kind in simple:
        return f"{simple[kind]}{tag}, got {_json_type(value)} {_show(value)}"
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")), "does not match the pattern")
        return f"bad value {_show(value)}: {hint}"
    if kind in ("less_than_equal", "greater_than_equal", "less_than", "greater_than"):
        op = {"less_than_equal": "<=", "greater_than_equal": ">=", "less_than": "<"}.get(kind, ">")
        bound = next(iter(ctx.values()), "?")
        return f"must be {op} {bound}{tag}, got {_show(value)}"
    if kind == "literal_error":
        return f"bad value {_show(value)}: use {ctx.get('expected', '?')}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length', '?')} items"
    if kind == "unique":
        return f"duplicate item {_show(ctx.get('item'))}"
    return " ".join(str(kind).split("_"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list"}
    return names.get(type(value), "object" if isinstance(value, dict) else type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
