"""WSGI middleware (Flask, Django, any WSGI app)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from chainlog_sdk.client import Client
from chainlog_sdk.context import Extractor, RequestContext, request_context

#: Where the middleware puts ``client`` in the WSGI environ.
ENVIRON_KEY = "chainlog.client"


class ChainlogWSGIMiddleware:
    """Sets the request context (IP address, user agent, session id) while the
    application handles a request, so ``track()`` fills it in.

    The server calls the application, and iterates the body, in one thread:
    the context is set in that thread while the application runs, and again
    while each chunk of a streamed body is produced, so a generator body sees
    it too. ``client``, if given, is put in the
    environ under ``"chainlog.client"``. The options are
    :class:`~chainlog_sdk.context.Extractor`'s.

    Flask: ``app.wsgi_app = ChainlogWSGIMiddleware(app.wsgi_app, client)``;
    Django: wrap ``get_wsgi_application()`` in ``wsgi.py``.
    """

    def __init__(
        self,
        app: WSGIApplication,
        client: Client | None = None,
        *,
        trust_forwarded: bool = False,
        session_header: str | None = "x-session-id",
        session_cookie: str | None = "session",
        hash_session_cookie: bool = True,
    ) -> None:
        self.app = app
        self.client = client
        self.extractor = Extractor(
            trust_forwarded=trust_forwarded,
            session_header=session_header,
            session_cookie=session_cookie,
            hash_session_cookie=hash_session_cookie,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        context = self.extractor.extract(environ.get("REMOTE_ADDR"), headers)
        if self.client is not None:
            environ[ENVIRON_KEY] = self.client
        with request_context(context):
            body = self.app(environ, start_response)
        if isinstance(body, list | tuple):  # nothing of the application runs any more
            return body
        return _Body(body, context)


class _Body:
    """The application's body, producing each chunk (and closing) under the context.

    Set only while the application's code runs: the server's own code
    between chunks, and whatever the thread does after the request, do not
    see it, even if a server forgets to close the body.
    """

    def __init__(self, inner: Iterable[bytes], context: RequestContext) -> None:
        self._inner = inner
        self._context = context

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with request_context(self._context):
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            with request_context(self._context):
                close()
