"""Limited installer access: the OCPP message log without card identifiers or personal data."""

import json
from datetime import timedelta

from django.utils import timezone

from chargers.redaction import REDACTED, redact_payload
from tests import builders
from tests.communities.portal_data import make_message

UID = "04A23B11C2"

V16_FRAMES = [
    ("Authorize", {"idTag": UID}),
    ("StartTransaction", {"connectorId": 1, "idTag": UID, "meterStart": 1000, "timestamp": "t"}),
    (
        "StopTransaction",
        {
            "transactionId": 7,
            "idTag": UID,
            "meterStop": 2000,
            "timestamp": "t",
            "transactionData": [{"timestamp": "t", "sampledValue": [{"value": "2000"}]}],
        },
    ),
    ("", {"idTagInfo": {"status": "Accepted", "parentIdTag": UID, "expiryDate": "t"}}),
    ("RemoteStartTransaction", {"connectorId": 1, "idTag": UID}),
    (
        "SendLocalList",
        {
            "listVersion": 3,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": UID, "idTagInfo": {"status": "Accepted"}}],
        },
    ),
    (
        "DataTransfer",
        {"vendorId": "com.example", "messageId": "User", "data": f"name=Alice;card={UID}"},
    ),
    ("ChangeConfiguration", {"key": "AuthorizationKey", "value": "0011223344556677"}),
]

V201_FRAMES = [
    ("Authorize", {"idToken": {"idToken": UID, "type": "ISO14443"}}),
    (
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": "t",
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "tx-1"},
            "idToken": {
                "idToken": UID,
                "type": "ISO14443",
                "additionalInfo": [{"additionalIdToken": UID, "type": "x"}],
            },
            "evse": {"id": 1, "connectorId": 1},
        },
    ),
    (
        "",
        {
            "idTokenInfo": {
                "status": "Accepted",
                "groupIdToken": {"idToken": UID, "type": "Central"},
                "personalMessage": {"format": "UTF8", "content": "Hello Alice"},
            }
        },
    ),
    (
        "RequestStartTransaction",
        {"remoteStartId": 1, "idToken": {"idToken": UID, "type": "Central"}},
    ),
    (
        "CustomerInformation",
        {"requestId": 1, "report": True, "clear": False, "customerIdentifier": "alice@example.com"},
    ),
    (
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": "s3cret",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    ),
]


def _text(payload):
    return json.dumps(payload)


def test_no_identifier_survives_in_16_frames():
    for action, payload in V16_FRAMES:
        redacted = redact_payload(payload, action=action)
        assert UID not in _text(redacted), action
        assert "Alice" not in _text(redacted)
    start = redact_payload(V16_FRAMES[1][1], action="StartTransaction")
    assert start == {"connectorId": 1, "idTag": REDACTED, "meterStart": 1000, "timestamp": "t"}
    assert "0011223344556677" not in _text(redact_payload(V16_FRAMES[-1][1]))
    assert redact_payload(V16_FRAMES[3][1])["idTagInfo"]["status"] == "Accepted"


def test_no_identifier_survives_in_201_frames():
    for action, payload in V201_FRAMES:
        redacted = redact_payload(payload, action=action)
        text = _text(redacted)
        assert UID not in text and "Alice" not in text and "alice@" not in text, action
        assert "s3cret" not in text
    event = redact_payload(V201_FRAMES[1][1], action="TransactionEvent")
    assert event["idToken"]["type"] == "ISO14443" and event["idToken"]["idToken"] == REDACTED
    assert event["evse"] == {"id": 1, "connectorId": 1} and event["seqNo"] == 0


def test_input_is_not_modified():
    payload = {"idTag": UID}
    redact_payload(payload)
    assert payload == {"idTag": UID}


def _limited_installer(community):
    company = builders.make_company()
    now = timezone.now()
    builders.make_grant(community, company, "limited", valid_from=now - timedelta(days=1))
    return builders.make_installer(company)


def test_limited_installer_sees_redacted_log(client, community, charger):
    make_message(charger, "StartTransaction", payload={"connectorId": 1, "idTag": UID})
    make_message(
        charger, "TransactionEvent", payload={"idToken": {"idToken": UID, "type": "ISO14443"}}
    )
    client.force_login(_limited_installer(community))
    page = client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert "StartTransaction" in page and "ISO14443" in page
    assert UID not in page and REDACTED in page


def test_manager_sees_the_frames_as_they_were(manager_client, charger):
    make_message(charger, "StartTransaction", payload={"connectorId": 1, "idTag": UID})
    page = manager_client.get(f"/c/tilleuls/chargers/{charger.pk}/").content.decode()
    assert UID in page
