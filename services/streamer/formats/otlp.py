"""OTLP/HTTP logs: an ``ExportLogsServiceRequest`` as JSON (and protobuf from the same dict).

One request per batch (one workspace)::

    {"resourceLogs": [{
      "resource": {"attributes": [service.name = "chainlog", chainlog.workspace_id]},
      "scopeLogs": [{"scope": {"name": "chainlog"}, "logRecords": [...]}]}]}

Each log record: ``timeUnixNano`` (``occurred_at``, else ``received_at``)
and ``observedTimeUnixNano`` (``received_at``), exact to the microsecond;
``severityNumber`` 9 ``INFO`` (13 ``WARN`` when the action says it
failed); ``body`` the action; ``eventName`` the action.

Attributes: the fields with an OpenTelemetry semantic-convention name get
it (``actor_id`` -> ``user.id``, ``actor_name`` -> ``user.name``,
``ip_address`` -> ``client.address``, ``user_agent`` ->
``user_agent.original``, ``session_id`` -> ``session.id``, ``ip_country``
-> ``geo.country.iso_code``, ``ip_city`` -> ``geo.locality.name``); every
other field is ``chainlog.<field>`` with its value as it is: objects as
``kvlistValue`` and lists as ``arrayValue``, not flattened to dotted keys,
so a key holding a dot stays unambiguous and nothing is lost. Integers are
``intValue`` strings, as the protobuf JSON mapping writes 64-bit integers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.streamer.formats.common import Event, epoch_us, event_time, kind

SERVICE_NAME = "chainlog"
SCOPE = "chainlog"
SEVERITY_INFO = (9, "INFO")
SEVERITY_WARN = (13, "WARN")
PLACES = {
    "actor_id": "user.id",
    "actor_name": "user.name",
    "ip_address": "client.address",
    "user_agent": "user_agent.original",
    "session_id": "session.id",
    "ip_country": "geo.country.iso_code",
    "ip_city": "geo.locality.name",
}


def any_value(value: Any) -> dict[str, Any]:
    """An OTLP ``AnyValue`` in its JSON form; null is the empty value."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if value is None:
        return {}
    raise TypeError(f"no OTLP value for {type(value).__name__}")


def key_values(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": str(k), "value": any_value(v)} for k, v in values.items()]


def log_record(event: Event) -> dict[str, Any]:
    number, text = SEVERITY_WARN if kind(event).outcome == "failure" else SEVERITY_INFO
    attributes = {
        PLACES.get(name, f"chainlog.{name}"): value
        for name, value in event.items()
        if value is not None
    }
    return {
        "timeUnixNano": str(epoch_us(event_time(event)) * 1000),
        "observedTimeUnixNano": str(epoch_us(str(event["received_at"])) * 1000),
        "severityNumber": number,
        "severityText": text,
        "eventName": str(event["action"]),
        "body": {"stringValue": str(event["action"])},
        "attributes": key_values(attributes),
    }


def request(
    records: Sequence[Mapping[str, Any]], *, workspace_id: str, service_name: str = SERVICE_NAME
) -> dict[str, Any]:
    """The ``ExportLogsServiceRequest`` of one workspace's ``log_record``s, in their order."""
    resource = {"service.name": service_name, "chainlog.workspace_id": workspace_id}
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": key_values(resource)},
                "scopeLogs": [{"scope": {"name": SCOPE}, "logRecords": list(records)}],
            }
        ]
    }


def protobuf(request_json: Mapping[str, Any]) -> bytes:
    """The same request as protobuf bytes (``application/x-protobuf``)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    message = logs_service_pb2.ExportLogsServiceRequest()
    json_format.ParseDict(request_json, message)
    return bytes(message.SerializeToString())
