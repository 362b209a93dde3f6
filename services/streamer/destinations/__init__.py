"""Log-stream destinations by ``type``: the wire formats the streamer speaks.

Each destination is stateless: config in, one attempt out (``base.Result``).
"""

from __future__ import annotations

from services.streamer.destinations.base import Destination, Result
from services.streamer.destinations.datadog import Datadog
from services.streamer.destinations.elasticsearch import Elasticsearch
from services.streamer.destinations.http import HttpBatch
from services.streamer.destinations.s3 import S3
from services.streamer.destinations.splunk import SplunkHec

DESTINATIONS: dict[str, Destination] = {
    d.type: d for d in (SplunkHec(), Datadog(), Elasticsearch(), HttpBatch(), S3())
}

__all__ = ["DESTINATIONS", "Destination", "Result"]
