"""What an installer with limited access may read in a charger's OCPP message log: the frames
as they were, minus what identifies a person. Limited access means "no personal data, no
sessions": card UIDs (1.6 `idTag`, `parentIdTag`; 2.0.1 `idToken`, `groupIdToken`, additional
tokens, e-mobility account ids), free text meant for a driver, certificates and EXI blobs of
ISO 15118 contracts, vendor `DataTransfer` data (anything may be in it) and configuration secrets.

One function, `redact_payload`, key-based and recursive, so it covers both protocol versions,
calls and results, and nested lists (`SendLocalList`, `TransactionEvent`). Numbers, states,
timestamps and error codes stay: that is what an installer needs to diagnose a charger."""

from __future__ import annotations

from typing import Any

REDACTED = "[redacted]"

# Keys whose whole value identifies a person or a card, in OCPP 1.6 and 2.0.1 payloads.
IDENTIFYING_KEYS = frozenset(
    {
        "idTag",  # 1.6 Authorize/StartTransaction/StopTransaction, RemoteStart, local lists
        "parentIdTag",  # 1.6 IdTagInfo
        "groupIdToken",  # 2.0.1 IdTokenInfo (object: redacted whole)
        "additionalIdToken",  # 2.0.1 AdditionalInfo
        "additionalInfo",  # 2.0.1 IdToken.additionalInfo (more tokens)
        "customerIdentifier",  # 2.0.1 CustomerInformation
        "emaid",  # 2.0.1 ISO 15118 contract id
        "contractId",
        "personalMessage",  # 2.0.1 IdTokenInfo: text shown to the driver
        "certificate",  # 2.0.1 ISO 15118 contract certificates
        "exiRequest",
        "exiResponse",
        "iso15118CertificateHashData",
        "customerCertificate",
        "vin",
    }
)
# `idToken` is a string inside 2.0.1's IdToken object and the object itself elsewhere.
TOKEN_KEYS = frozenset({"idToken"})
# Configuration keys whose value is a secret (1.6 ChangeConfiguration / GetConfiguration) and
# 2.0.1 variables (Set/GetVariables, NotifyReport) that hold one.
SECRET_CONFIGURATION_KEYS = frozenset({"AuthorizationKey", "BasicAuthPassword"})


def _redact_token(value: Any) -> Any:
    if isinstance(value, dict):
        # 2.0.1 IdToken {idToken, type, additionalInfo}: the type says which kind of card it
        # was (useful to diagnose), the token and its extras are personal.
        return {key: (inner if key == "type" else REDACTED) for key, inner in value.items()}
    return REDACTED


def _is_secret_holder(node: dict) -> bool:
    if node.get("key") in SECRET_CONFIGURATION_KEYS:  # 1.6 {"key", "value"}
        return True
    variable = node.get("variable")
    return isinstance(variable, dict) and variable.get("name") in SECRET_CONFIGURATION_KEYS


def redact_payload(payload: Any, *, action: str = "") -> Any:
    """A copy of an OCPP payload (any version, call or result) without personal data."""
    if action == "DataTransfer" and isinstance(payload, dict) and "data" in payload:
        payload = {**payload, "data": REDACTED}
    if isinstance(payload, list):
        return [redact_payload(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    secret = _is_secret_holder(payload)
    result: dict[str, Any] = {}
    for key, value in payload.items():
        if key in IDENTIFYING_KEYS:
            result[key] = REDACTED if not isinstance(value, list) else [REDACTED for _v in value]
        elif key in TOKEN_KEYS:
            result[key] = _redact_token(value)
        elif secret and key in ("value", "attributeValue", "variableAttribute"):
            result[key] = (
                [{**a, "value": REDACTED} if "value" in a else a for a in value]
                if isinstance(value, list)
                else REDACTED
            )
        else:
            result[key] = redact_payload(value)
    return result
