"""The one adapter between the gateway and the `ocpp` library.

The gateway does its own framing, dispatch and call bookkeeping (`base.py`): the library's
`ChargePoint` renames every key camel→snake and reflects on each handler per call (44 % of the
gateway's CPU, measured), and keeps per-instance route maps, queues and locks. What the library
does well is kept, and only through this module:

- the JSON schemas it ships (compiled once with fastjsonschema in `validation.py`),
- the names of the actions each version defines (to tell an unknown action from an unsupported
  one),
- its error classes (the CALLERROR codes), and
- its call dataclasses, to build the requests the gateway sends from checked keyword arguments.

Nothing else in `ocpp_gateway/` imports `ocpp`. `tests/ocpp_gateway/test_ocpplib.py` fails
loudly when a library upgrade changes any of this; `pyproject.toml` pins the minor version that
test ran against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ocpp
from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    GenericError,
    InternalError,
    NotImplementedError,  # noqa: A004 - the library's name for the NotImplemented CALLERROR
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    SecurityError,
    TypeConstraintViolationError,
)
from ocpp.v16 import call as call16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import call as call201
from ocpp.v201.enums import Action as Action201

__all__ = [
    "FormationViolationError",
    "FormatViolationError",
    "GenericError",
    "InternalError",
    "LIBRARY_VERSION",
    "NotImplementedError",
    "NotSupportedError",
    "OCPPError",
    "OccurrenceConstraintViolationError",
    "PropertyConstraintViolationError",
    "ProtocolError",
    "RpcFrameworkError",
    "SecurityError",
    "TypeConstraintViolationError",
    "known_actions",
    "request",
    "schema_path",
]

LIBRARY_VERSION = getattr(ocpp, "__version__", None)
_ROOT = Path(ocpp.__file__).resolve().parent
_FOLDER = {"1.6": "v16", "2.0.1": "v201"}
_CALLS = {"1.6": call16, "2.0.1": call201}
_KNOWN = {
    "1.6": frozenset(a.value for a in Action16),
    "2.0.1": frozenset(a.value for a in Action201),
}


class RpcFrameworkError(OCPPError):
    """2.0.1 only: "Content of the call is not a valid RPC Request, for example: MessageId could
    not be read" (OCPP-J 2.0.1 §4.3). The library has no class for it."""

    code = "RpcFrameworkError"
    default_description = "Content of the call is not a valid RPC Request"


def schema_path(version: str, name: str) -> Path:
    """Where the library keeps the JSON schema `name` (e.g. "MeterValues",
    "TransactionEventRequest", "GetConfigurationResponse") of `version`."""
    return _ROOT / _FOLDER[version] / "schemas" / f"{name}.json"


def known_actions(version: str) -> frozenset[str]:
    """Every action `version` defines, in either direction."""
    return _KNOWN[version]


def request(version: str, action: str, **fields: Any) -> dict[str, Any]:
    """The camelCase payload of a request the gateway sends, built through the library's call
    dataclass (so a misspelt or missing field raises TypeError here, not at the charger)."""
    dataclass = getattr(_CALLS[version], action)(**fields)
    payload: dict[str, Any] = snake_to_camel_case(remove_nones(serialize_as_dict(dataclass)))
    return payload
