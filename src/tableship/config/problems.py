"""Pydantic validation errors → one ``key.path: message`` line per problem.

The key path is read off pydantic's public ``loc`` by walking it along the input data:
an item that is a key (or index) of the data is part of the path; the tag pydantic
inserts for a tagged union (the value of the table's ``type``) and the names of the
validator functions that follow a value are not. No pydantic internals are named here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

_PAST = object()  # the walk went past the input data (a missing key, a scalar's validators)


def key_path(prefix: str, loc: tuple, data: Any) -> str:
    """``sources.wh.port`` for ``loc = ("impala", "port")`` under ``prefix = "sources.wh"``."""
    parts = [prefix] if prefix else []
    cur: Any = data
    for item in loc:
        if isinstance(cur, dict):
            if item in cur:
                cur = cur[item]
            elif item == cur.get("type"):
                continue  # the discriminator tag of a tagged union
            else:
                cur = _PAST  # a missing key: named, nothing below it
            parts.append(f"[{item}]" if isinstance(item, int) else str(item))
        elif isinstance(cur, list) and isinstance(item, int) and 0 <= item < len(cur):
            cur = cur[item]
            parts.append(f"[{item}]")
        # else: past a scalar value, what follows names pydantic's validators, not keys
    return ".".join(parts).replace(".[", "[")


def message(err: ErrorDetails, plugin_types: bool = False) -> str:
    """The problem in words (pydantic's own message, or a clearer one for common types)."""
    if err["type"] == "union_tag_invalid" and plugin_types:
        ctx = err.get("ctx") or {}
        return (
            f"unknown type {ctx.get('tag')!r} (built in: {ctx.get('expected_tags')}; "
            "other types come from installed plugins, see docs/architecture.md)"
        )
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling)"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "union_tag_not_found":
        return "required key 'type' is missing"
    return err["msg"].removeprefix("Value error, ")


def validate(
    model: type[BaseModel] | TypeAdapter,
    data: Any,
    prefix: str,
    problems: list[str],
    ctx: dict,
    plugin_types: bool = False,
) -> Any:
    """``model`` validated from ``data``; None, with each problem appended, when it is invalid.
    ``plugin_types``: a source/destination table, whose unknown ``type`` may be a plugin's."""
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data, context=ctx)
        return model.model_validate(data, context=ctx)
    except ValidationError as exc:
        for e in exc.errors():
            loc = tuple(e["loc"])
            if e["type"] == "union_tag_invalid" and plugin_types:
                loc = (*loc, "type")  # the bad value is the table's 'type'
            problems.append(f"{key_path(prefix, loc, data)}: {message(e, plugin_types)}")
        return None
