"""Log-stream destinations by ``type``: the wire formats the streamer speaks.

Each destination is stateless but for caches (OAuth tokens, TLS
contexts): config in, one attempt out (``base.Result``).
"""

from __future__ import annotations

from services.streamer.destinations.base import Destination, Result
from services.streamer.destinations.chronicle import Chronicle
from services.streamer.destinations.datadog import Datadog
from services.streamer.destinations.elasticsearch import Elasticsearch
from services.streamer.destinations.http import HttpBatch
from services.streamer.destinations.otlp import Otlp
from services.streamer.destinations.s3 import S3
from services.streamer.destinations.security_lake import SecurityLake
from services.streamer.destinations.sentinel import Sentinel
from services.streamer.destinations.splunk import SplunkHec
from services.streamer.destinations.syslog import Syslog

DESTINATIONS: dict[str, Destination] = {
    d.type: d
    for d in (
        SplunkHec(),
        Datadog(),
        Elasticsearch(),
        HttpBatch(),
        S3(),
        Syslog(),
        Sentinel(),
        Chronicle(),
        Otlp(),
        SecurityLake(),
    )
}

__all__ = ["DESTINATIONS", "Destination", "Result"]
