"""Middleware that records who is calling, for the events tracked while handling a request."""

from chainlog_sdk.middleware.asgi import ChainlogMiddleware
from chainlog_sdk.middleware.wsgi import ChainlogWSGIMiddleware

__all__ = ["ChainlogMiddleware", "ChainlogWSGIMiddleware"]
