"""The adapter over the `ocpp` library fails loudly when an upgrade changes what we rely on:
the pinned version, the schemas of every action we handle or send, the action names, the error
codes, and the call dataclasses we build requests with. And nothing else in the gateway imports
the library."""

import ast
import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest

from ocpp_gateway import ocpplib, validation
from ocpp_gateway.v16 import ChargePoint16
from ocpp_gateway.v201 import ChargePoint201

GATEWAY = Path(__file__).resolve().parents[2] / "ocpp_gateway"
PYPROJECT = GATEWAY.parent / "pyproject.toml"
CLASSES = {"1.6": ChargePoint16, "2.0.1": ChargePoint201}
# What the gateway sends by itself (configuration) besides the portal's actions.
SENT = {
    "1.6": {"GetConfiguration", "ChangeConfiguration"},
    "2.0.1": {"GetBaseReport", "GetVariables", "SetVariables"},
}


def test_installed_library_is_the_pinned_minor_version():
    pin = re.search(r'"ocpp>=(\d+)\.(\d+),<(\d+)\.(\d+)"', PYPROJECT.read_text())
    assert pin, "pyproject.toml must pin ocpp to one minor version"
    low, high = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    installed = tuple(int(part) for part in version("ocpp").split(".")[:2])
    assert low <= installed < high, f"ocpp {version('ocpp')} is not the tested {low}"


@pytest.mark.parametrize("ocpp_version", ["1.6", "2.0.1"])
def test_every_action_we_handle_or_send_has_its_schemas_and_is_a_known_action(ocpp_version):
    cls = CLASSES[ocpp_version]
    known = ocpplib.known_actions(ocpp_version)
    for action in cls.HANDLERS:
        assert action in known
        for response in (False, True):
            name = validation.schema_name(ocpp_version, action, response)
            assert ocpplib.schema_path(ocpp_version, name).is_file(), name
            assert validation._validator(ocpp_version, name) is not None
    for action in cls.PORTAL_ACTIONS | SENT[ocpp_version]:
        assert action in known
        for response in (False, True):
            name = validation.schema_name(ocpp_version, action, response)
            assert ocpplib.schema_path(ocpp_version, name).is_file(), name


def test_schemas_still_forbid_what_they_forbade():
    schema = json.loads(ocpplib.schema_path("1.6", "Heartbeat").read_text("utf-8-sig"))
    assert schema.get("additionalProperties") is False
    with pytest.raises(ocpplib.OCPPError) as error:
        validation.validate("1.6", "StatusNotification", {"connectorId": 1, "status": "Available"})
    assert error.value.code == "ProtocolError"


@pytest.mark.parametrize("ocpp_version", ["1.6", "2.0.1"])
def test_inlined_schemas_judge_payloads_as_the_shipped_ones_do(ocpp_version):
    """Every schema the library ships compiles with its definitions inlined (none recurses),
    and the inlined validator refuses what the shipped one refuses, with the same rule and
    path: a nested enum, a nested type, a nested required property, an extra property."""
    import fastjsonschema

    heartbeat = validation.schema_name(ocpp_version, "Heartbeat", response=False)
    for path in ocpplib.schema_path(ocpp_version, heartbeat).parent.glob("*.json"):
        schema = json.loads(path.read_text("utf-8-sig"))
        assert "$ref" not in json.dumps(validation.inline_definitions(schema)), path.name
    if ocpp_version == "1.6":
        name, good = "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t"}]}
        good["meterValue"][0]["sampledValue"] = [{"value": "1", "unit": "Wh"}]
        nested = ("meterValue", 0, "sampledValue", 0)
    else:
        name = "TransactionEventRequest"
        good = {
            "eventType": "Updated",
            "timestamp": "t",
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 1,
            "transactionInfo": {"transactionId": "T1"},
            "meterValue": [
                {"timestamp": "t", "sampledValue": [{"value": 1, "unitOfMeasure": {"unit": "W"}}]}
            ],
        }
        nested = ("meterValue", 0, "sampledValue", 0)
    schema = json.loads(ocpplib.schema_path(ocpp_version, name).read_text("utf-8-sig"))
    schema.pop("$id", None)
    shipped = fastjsonschema.compile(schema, formats=validation._FORMATS)
    inlined = validation._validator(ocpp_version, name)
    assert inlined is not None
    assert shipped(good) == inlined(good) == good

    def broken(change):
        payload = json.loads(json.dumps(good))
        target = payload
        for key in nested:
            target = target[key]
        change(target)
        return payload

    cases = [
        broken(lambda sv: sv.update(measurand="Nonsense")),
        broken(lambda sv: sv.update(value=[1])),
        broken(lambda sv: sv.pop("value")),
        broken(lambda sv: sv.update(extra=1)),
    ]
    for payload in cases:
        outcomes = []
        for validator in (shipped, inlined):
            with pytest.raises(fastjsonschema.JsonSchemaValueException) as error:
                validator(payload)
            outcomes.append((error.value.rule, error.value.name))
        assert outcomes[0] == outcomes[1], payload


def test_error_classes_carry_the_specification_codes():
    assert {
        cls.code
        for cls in (
            ocpplib.FormationViolationError,
            ocpplib.FormatViolationError,
            ocpplib.InternalError,
            ocpplib.NotImplementedError,
            ocpplib.NotSupportedError,
            ocpplib.PropertyConstraintViolationError,
            ocpplib.ProtocolError,
            ocpplib.TypeConstraintViolationError,
            ocpplib.RpcFrameworkError,
        )
    } == {
        "FormationViolation",
        "FormatViolation",
        "InternalError",
        "NotImplemented",
        "NotSupported",
        "PropertyConstraintViolation",
        "ProtocolError",
        "TypeConstraintViolation",
        "RpcFrameworkError",
    }
    error = ocpplib.InternalError(details={"cause": "x"})
    assert error.details == {"cause": "x"} and isinstance(error.description, str)


def test_requests_built_through_the_call_dataclasses():
    assert ocpplib.request("1.6", "GetConfiguration") == {}
    assert ocpplib.request("1.6", "GetConfiguration", key=["A", "B"]) == {"key": ["A", "B"]}
    assert ocpplib.request("1.6", "ChangeConfiguration", key="K", value="1") == {
        "key": "K",
        "value": "1",
    }
    assert ocpplib.request(
        "2.0.1", "GetBaseReport", request_id=3, report_base="ConfigurationInventory"
    ) == {"requestId": 3, "reportBase": "ConfigurationInventory"}
    assert ocpplib.request(
        "2.0.1",
        "SetVariables",
        set_variable_data=[
            {"attribute_value": "30", "component": {"name": "C"}, "variable": {"name": "V"}}
        ],
    ) == {
        "setVariableData": [
            {"attributeValue": "30", "component": {"name": "C"}, "variable": {"name": "V"}}
        ]
    }
    built = ocpplib.request(
        "2.0.1",
        "GetVariables",
        get_variable_data=[{"component": {"name": "C"}, "variable": {"name": "V"}}],
    )
    validation.validate("2.0.1", "GetVariables", built)  # what we build passes the schema
    with pytest.raises(TypeError):
        ocpplib.request("1.6", "ChangeConfiguration", key="K")  # value is required


def test_only_the_adapter_imports_the_library():
    offenders = []
    for path in GATEWAY.glob("*.py"):
        if path.name == "ocpplib.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            offenders += [
                f"{path.name}: {n}" for n in names if n == "ocpp" or n.startswith("ocpp.")
            ]
    assert offenders == []


def _string_enums(node):
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            yield node["enum"]
        for value in node.values():
            yield from _string_enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _string_enums(value)


@pytest.mark.parametrize("ocpp_version", ["1.6", "2.0.1"])
def test_enums_compiled_as_sets_judge_values_as_fastjsonschema_does(ocpp_version):
    """Every enum of every shipped schema, compiled by our generator (a set lookup) and by
    fastjsonschema's (a chain of comparisons): same verdict and rule for each member and for
    near misses of other case, length or type."""
    import fastjsonschema

    heartbeat = validation.schema_name(ocpp_version, "Heartbeat", response=False)
    enums = {
        tuple(enum)
        for path in ocpplib.schema_path(ocpp_version, heartbeat).parent.glob("*.json")
        for enum in _string_enums(json.loads(path.read_text("utf-8-sig")))
    }
    assert len(enums) > 20 and all(isinstance(v, str) for enum in enums for v in enum)
    draft = "draft-04" if ocpp_version == "1.6" else "draft-06"
    for enum in enums:
        schema = {"$schema": f"http://json-schema.org/{draft}/schema#", "enum": list(enum)}
        ours, theirs = validation.compile_schema(schema), fastjsonschema.compile(schema)
        values = [
            *enum,
            enum[0].lower(),
            enum[0].upper(),
            enum[0] + " ",
            "",
            1,
            None,
            True,
            [enum[0]],
        ]
        for value in values:
            outcomes = []
            for validator in (ours, theirs):
                try:
                    validator(value)
                    outcomes.append("valid")
                except fastjsonschema.JsonSchemaValueException as error:
                    outcomes.append(error.rule)
            assert outcomes[0] == outcomes[1], (enum, value)


def test_the_date_time_format_is_not_checked_as_the_library_does_not():
    """Chargers send timestamps without a zone or with odd fractions; neither the library nor
    we refuse them (formats are not compiled at all)."""
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "yesterday", "sampledValue": []}]}
    payload["meterValue"][0]["sampledValue"] = [{"value": "1"}]
    validation.validate("1.6", "MeterValues", payload)
