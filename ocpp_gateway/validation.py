"""Payload validation with compiled JSON schemas.

The `ocpp` library validates every payload with `jsonschema` on a thread pool (~350 µs per 1.6
message, ~900 µs per 2.0.1 one, measured). We validate with `fastjsonschema` validators compiled
once from the very schemas the library ships (`ocpp/v16/schemas`, `ocpp/v201/schemas`, found through `ocpplib`), on the
event loop (a few µs), and register our handlers with `skip_schema_validation=True`.

Two changes to the code fastjsonschema generates, neither changing what passes (a test compares
verdicts, rules and paths with the shipped schemas): an enum of strings is one set lookup, not a
chain of comparisons (1.6 `measurand` has 22 values; a third of the cost of a MeterValues), and
formats are not compiled at all — the schemas only use `date-time` and `uri`, which we accept as
the library does (not checked), instead of calling a function that says yes for every
timestamp.

Errors map to the CALLERROR codes the library would send for the same violation, except that
1.6 uses the spec's own spelling `FormationViolation` and an out-of-range value (enum, minimum…)
is a `PropertyConstraintViolation`, as both specs define it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

import fastjsonschema
from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06
from fastjsonschema.ref_resolver import RefResolver

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


def _string_enum(generator: CodeGeneratorDraft04) -> bool:
    """Generate `{"type": "string", "enum": [...]}` as one membership test in a constant set
    (CPython folds a set literal after `in` into a frozenset constant) instead of
    fastjsonschema's `isinstance(v, str) and v == 'a' or isinstance(v, str) and v == 'b' or …`.
    False for other enums (none in the OCPP schemas): they keep the generic code."""
    enum = (generator._definition or {}).get("enum")
    if not (isinstance(enum, list) and enum and all(type(v) is str for v in enum)):
        return False
    members = "{" + ", ".join(repr(v) for v in enum) + "}"
    with generator.l("if not (isinstance({variable}, str) and {variable} in {}):", members):
        generator.exc("{name} must be one of {}", generator.e(enum), rule="enum")
    return True


class _Draft04(CodeGeneratorDraft04):
    def generate_enum(self) -> None:
        if not _string_enum(self):
            super().generate_enum()


class _Draft06(CodeGeneratorDraft06):
    def generate_enum(self) -> None:
        if not _string_enum(self):
            super().generate_enum()


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """What `fastjsonschema.compile(schema)` does, with the generator above, without formats
    (see the module docstring) and keeping `default` (2.0.1 `offline` defaults to false)."""
    generator_class = _Draft04 if "draft-04" in schema.get("$schema", "") else _Draft06
    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    generator = generator_class(schema, resolver=resolver, use_formats=False)
    namespace = generator.global_state
    exec(generator.func_code, namespace)  # noqa: S102 - code generated from the shipped schema
    validator: Callable[[Any], Any] = namespace[resolver.get_scope_name()]
    return validator


def _strings_have_no_properties(node: Any) -> Any:
    """The 1.6 schemas give their enum strings `"additionalProperties": false`, which compiles
    to a dict check on every string value; it can never fail for a string, so it is dropped."""
    if isinstance(node, dict):
        out = {k: _strings_have_no_properties(v) for k, v in node.items()}
        if out.get("type") == "string":
            out.pop("additionalProperties", None)
        return out
    if isinstance(node, list):
        return [_strings_have_no_properties(v) for v in node]
    return node


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
    return compile_schema(_strings_have_no_properties(schema))


def compile_requests(version: str, actions: Iterable[str]) -> int:
    """Compile the validators of the requests chargers send, at start: compiling one takes
    ~10 ms, which would otherwise stall the event loop at the first message of each kind."""
    count = 0
    for action in actions:
        count += _validator(version, schema_name(version, action, response=False)) is not None
    return count


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
