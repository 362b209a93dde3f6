"""Chainlog's Python SDK: send audit events, query, verify and export them.

>>> from chainlog_sdk import Client, BatchOptions
>>> client = Client(batching=BatchOptions())   # CHAINLOG_API_URL, CHAINLOG_API_KEY
>>> client.track("document.delete", "user_42", resource="document", resource_id="doc_9")
"""

from chainlog_sdk._api import VERSION as __version__
from chainlog_sdk.async_client import AsyncClient
from chainlog_sdk.batching import BatchOptions, OnError, Stats
from chainlog_sdk.client import Client
from chainlog_sdk.context import RequestContext, request_context
from chainlog_sdk.download import Download
from chainlog_sdk.errors import (
    ChainlogError,
    ChecksumMismatch,
    ClientClosed,
    Conflict,
    ExportFailed,
    Forbidden,
    Gone,
    NetworkError,
    NotFound,
    PlanLimitReached,
    QueueFull,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from chainlog_sdk.events import BatchResult, ItemResult
from chainlog_sdk.middleware import ChainlogMiddleware, ChainlogWSGIMiddleware
from chainlog_sdk.retry import Backoff

__all__ = [
    "AsyncClient",
    "Backoff",
    "BatchOptions",
    "BatchResult",
    "ChainlogError",
    "ChainlogMiddleware",
    "ChainlogWSGIMiddleware",
    "ChecksumMismatch",
    "Client",
    "ClientClosed",
    "Conflict",
    "Download",
    "ExportFailed",
    "Forbidden",
    "Gone",
    "ItemResult",
    "NetworkError",
    "NotFound",
    "OnError",
    "PlanLimitReached",
    "QueueFull",
    "RateLimited",
    "RequestContext",
    "ServerError",
    "Stats",
    "Unauthenticated",
    "Unavailable",
    "ValidationError",
    "__version__",
    "request_context",
]
