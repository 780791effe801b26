"""Payload validation with compiled JSON schemas.

The `ocpp` library validates every payload with `jsonschema` on a thread pool (~350 µs per 1.6
message, ~900 µs per 2.0.1 one, measured). We validate with `fastjsonschema` validators compiled
once from the very schemas the library ships (`ocpp/v16/schemas`, `ocpp/v201/schemas`, found through `ocpplib`), on the
event loop (a few µs), and register our handlers with `skip_schema_validation=True`.

Errors map to the CALLERROR codes the library would send for the same violation, except that
1.6 uses the spec's own spelling `FormationViolation` and an out-of-range value (enum, minimum…)
is a `PropertyConstraintViolation`, as both specs define it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema

from .ocpplib import (
    FormationViolationError,
    FormatViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
    schema_path,
)
from .ocpplib import NotImplementedError as OcppNotImplementedError

# Chargers send timestamps without a time zone or with odd fractions; the library does not check
# formats either (jsonschema ignores `format` unless asked), so neither do we.
_FORMATS = {"date-time": lambda value: True, "uri": lambda value: True}


def schema_name(version: str, action: str, response: bool) -> str:
    if response:
        return f"{action}Response"
    return action if version == "1.6" else f"{action}Request"


def inline_definitions(schema: dict[str, Any], limit: int = 64) -> dict[str, Any]:
    """The schema with each `{"$ref": "#/definitions/X"}` replaced by X itself (OCPP's schemas
    do not recurse; `limit` guards against one that would). fastjsonschema compiles a `$ref` to
    a call that formats the error path of every nested object eagerly, valid or not — half the
    cost of validating a 2.0.1 TransactionEvent; inline, the path is built only for an error."""
    definitions = schema.get("definitions") or {}

    def walk(node: Any, depth: int) -> Any:
        if depth > limit:
            raise RecursionError("recursive schema")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/definitions/"):
                return walk(definitions[ref.removeprefix("#/definitions/")], depth + 1)
            return {k: walk(v, depth + 1) for k, v in node.items() if k != "definitions"}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema, 0)
    return inlined


@cache
def _validator(version: str, name: str) -> Callable[[Any], Any] | None:
    path = schema_path(version, name)
    try:
        # 2.0.1 schemas start with a byte order mark.
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError:
        return None
    schema.pop("$id", None)
    try:
        schema = inline_definitions(schema)
    except (RecursionError, KeyError):
        pass  # compiled with its references, as shipped
    return fastjsonschema.compile(schema, formats=_FORMATS)


def format_violation(
    version: str, description: str | None = None, details: dict[str, Any] | None = None
) -> OCPPError:
    """The right "payload/frame is syntactically wrong" error for the version."""
    cls = FormationViolationError if version == "1.6" else FormatViolationError
    return cls(description=description, details=details)


def validate(version: str, action: str, payload: object, response: bool = False) -> None:
    """Raise the OCPPError a CALLERROR should carry when `payload` breaks the schema."""
    validator = _validator(version, schema_name(version, action, response))
    if validator is None:
        raise OcppNotImplementedError(details={"cause": f"No schema for {action}"})
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaValueException as e:
        details = {"cause": e.message}
        if e.rule in ("type", "maxLength"):
            raise TypeConstraintViolationError(details=details)
        if e.rule == "required":
            raise ProtocolError(details=details)
        if e.rule in (
            "enum",
            "minimum",
            "maximum",
            "minLength",
            "multipleOf",
            "minItems",
            "maxItems",
            "pattern",
        ):
            raise PropertyConstraintViolationError(details=details)
        raise format_violation(version, details=details)
