"""Real local receivers for the log-stream destinations: HEC, Datadog, Elasticsearch, webhooks, S3.

Each is an HTTP server in a thread of the test process on 127.0.0.1 (an
ephemeral port) that speaks its product's wire format closely enough to
fail a wrong request the way the product would, and records what it got
in arrival order. All expose ``url``, ``stop()``, ``fail_next(n, status)``
(answer the next ``n`` requests with that status and the product's error
body) and ``wait_for(predicate)`` (a deadline, no sleeping).

``S3Server`` is moto's S3 with SigV4 enforced: a wrong signature or key
fails as on AWS, so the happy path proves the signing too.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import threading
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

WAIT_S = 10.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes  # as sent (still gzipped if it was)

    def decoded(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


def _json(status: int, doc: Any) -> Reply:
    return Reply(status, json.dumps(doc).encode())


class _Waitable:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._failures: deque[int | None] = deque()

    def fail_next(self, n: int, status: int = 503, *, after: int = 0) -> None:
        """Answer ``n`` requests with ``status`` and this product's error body, after
        answering the next ``after`` as usual."""
        with self.cond:
            self._failures.extend([None] * after + [status] * n)

    def _take_failure(self) -> int | None:
        return self._failures.popleft() if self._failures else None

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Until ``predicate()`` (called under the receiver's lock) holds; AssertionError after ``timeout``."""
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"{type(self).__name__}: condition not met in {timeout} s")


class HttpReceiver(_Waitable):
    """The shared server: records each request, then answers ``fail_next`` or ``handle``."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None

    def handle(self, request: Request) -> Reply:
        """Called under ``self.cond``: state changes need no other lock."""
        raise NotImplementedError

    def failure(self, status: int) -> Reply:
        return _json(status, {"status": status})

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = Request(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                with receiver.cond:
                    receiver.requests.append(request)
                    status = receiver._take_failure()
                    reply = receiver.failure(status) if status else receiver.handle(request)
                    receiver.cond.notify_all()
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _gunzip(request: Request) -> bytes | None:
    try:
        return request.decoded()
    except (OSError, EOFError):
        return None


class HecReceiver(HttpReceiver):
    """Splunk HEC's ``/services/collector/event``: token, gzip, concatenated JSON events."""

    PATH = "/services/collector/event"

    def __init__(self, token: str, *, indexes: Iterable[str] | None = None) -> None:
        super().__init__()
        self.token = token
        self.indexes = None if indexes is None else set(indexes)
        self.events: list[dict[str, Any]] = []

    def start(self) -> HecReceiver:
        super().start()
        return self

    def failure(self, status: int) -> Reply:
        if status == 503:
            return _json(503, {"text": "Server is busy", "code": 9})
        return _json(status, {"text": "Internal server error", "code": 8})

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0] != self.PATH:
            return _json(
                404, {"text": "The requested URL was not found on this server.", "code": 404}
            )
        auth = request.headers.get("authorization")
        if auth is None:
            return _json(401, {"text": "Token is required", "code": 2})
        scheme, _, token = auth.partition(" ")
        if scheme != "Splunk":
            return _json(401, {"text": "Invalid authorization", "code": 3})
        if token != self.token:
            return _json(403, {"text": "Invalid token", "code": 4})
        raw = _gunzip(request)
        if raw is None:
            return _json(400, {"text": "Invalid data format", "code": 6})
        try:
            objects = _concatenated(raw.decode())
        except ValueError:
            return _json(400, {"text": "Invalid data format", "code": 6})
        if not objects:
            return _json(400, {"text": "No data", "code": 5})
        # HEC indexes the events before the first bad one and says which it was
        for i, obj in enumerate(objects):
            problem = self._problem(obj)
            if problem is not None:
                text, code = problem
                return _json(400, {"text": text, "code": code, "invalid-event-number": i})
            self.events.append(obj)
        return _json(200, {"text": "Success", "code": 0})

    def _problem(self, obj: Any) -> tuple[str, int] | None:
        if not isinstance(obj, dict) or "event" not in obj:
            return "Event field is required", 12
        if obj["event"] in ("", None, {}):
            return "Event field cannot be blank", 13
        if "time" in obj and not isinstance(obj["time"], int | float):
            return "Invalid data format", 6
        if self.indexes is not None and obj.get("index", "main") not in self.indexes:
            return "Incorrect index", 7
        return None


def _concatenated(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


class DatadogReceiver(HttpReceiver):
    """Datadog's ``/api/v2/logs``: ``DD-API-KEY``, gzip, an array of at most 1,000 logs and 5 MB."""

    PATH = "/api/v2/logs"
    MAX_ENTRIES = 1000
    MAX_BYTES = 5 * 1024 * 1024

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.logs: list[dict[str, Any]] = []
        self.batch_sizes: list[int] = []

    def start(self) -> DatadogReceiver:
        super().start()
        return self

    @property
    def intake_url(self) -> str:
        return self.url + self.PATH

    def failure(self, status: int) -> Reply:
        return _json(status, {"errors": [{"status": str(status), "title": "Unavailable"}]})

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0] != self.PATH:
            return _json(404, {"errors": [{"status": "404", "title": "Not Found"}]})
        if request.headers.get("dd-api-key") != self.api_key:
            return _json(
                403, {"errors": [{"status": "403", "title": "Forbidden", "detail": "Forbidden"}]}
            )
        raw = _gunzip(request)
        if raw is None:
            return _json(400, {"errors": [{"status": "400", "title": "Bad Request"}]})
        if len(raw) > self.MAX_BYTES:
            return _json(413, {"errors": [{"status": "413", "title": "Payload Too Large"}]})
        try:
            doc = json.loads(raw)
        except ValueError:
            return _json(400, {"errors": [{"status": "400", "title": "Bad Request"}]})
        logs = doc if isinstance(doc, list) else [doc]
        if len(logs) > self.MAX_ENTRIES or not all(isinstance(x, dict) for x in logs):
            return _json(413, {"errors": [{"status": "413", "title": "Too many logs"}]})
        self.logs.extend(logs)
        self.batch_sizes.append(len(logs))
        return _json(202, {})


class ElasticReceiver(HttpReceiver):
    """Elasticsearch ``_bulk`` with ``create``: an in-memory index keyed by ``_id``.

    ``reject_once(ids)`` answers those items 429 once (a full write queue);
    ``refuse(ids)`` answers them 400 always (a mapping error).
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        self.auth: str | None = None
        if username is not None:
            self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        elif api_key is not None:
            self.auth = f"ApiKey {api_key}"
        self.indices: dict[str, dict[str, dict[str, Any]]] = {}
        self.created: list[str] = []  # ids in creation order
        self._reject_once: set[str] = set()
        self._refuse: set[str] = set()
        self._seq_no = itertools.count()

    def start(self) -> ElasticReceiver:
        super().start()
        return self

    def reject_once(self, ids: Iterable[str]) -> None:
        with self.cond:
            self._reject_once.update(ids)

    def refuse(self, ids: Iterable[str]) -> None:
        with self.cond:
            self._refuse.update(ids)

    def docs(self, index: str) -> dict[str, dict[str, Any]]:
        with self.cond:
            return dict(self.indices.get(index, {}))

    @staticmethod
    def _error(status: int, kind: str, reason: str) -> Reply:
        cause = {"type": kind, "reason": reason}
        return _json(status, {"error": {"root_cause": [cause], **cause}, "status": status})

    def failure(self, status: int) -> Reply:
        if status == 429:
            return self._error(429, "es_rejected_execution_exception", "rejected execution")
        return self._error(status, "unavailable_shards_exception", "primary shard is not active")

    def handle(self, request: Request) -> Reply:
        if request.path.split("?")[0] != "/_bulk":
            return self._error(404, "resource_not_found_exception", "no such endpoint")
        if self.auth is not None and request.headers.get("authorization") != self.auth:
            return self._error(
                401,
                "security_exception",
                "missing authentication credentials for REST request [/_bulk]",
            )
        content_type = request.headers.get("content-type", "").split(";")[0]
        if content_type not in ("application/x-ndjson", "application/json"):
            return self._error(
                406, "media_type_header_exception", f"Content-Type [{content_type}] not supported"
            )
        raw = _gunzip(request)
        if raw is None or not raw.endswith(b"\n"):
            return self._error(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline",
            )
        lines = raw.decode().splitlines()
        if len(lines) % 2:
            return self._error(400, "illegal_argument_exception", "action without a document")
        items = []
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)
            items.append(self._create(action, json.loads(doc_line)))
        errors = any("error" in next(iter(item.values())) for item in items)
        return _json(200, {"took": 1, "errors": errors, "items": items})

    def _create(self, action: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        ((op, meta),) = action.items()
        index, doc_id = meta.get("_index"), meta.get("_id")
        base = {"_index": index, "_id": doc_id}

        def error(status: int, kind: str, reason: str) -> dict[str, Any]:
            return {op: {**base, "status": status, "error": {"type": kind, "reason": reason}}}

        if op != "create":
            return error(400, "illegal_argument_exception", f"only create is expected, got {op}")
        if doc_id in self._refuse:
            return error(400, "document_parsing_exception", "failed to parse field [metadata]")
        if doc_id in self._reject_once:
            self._reject_once.discard(doc_id)
            return error(429, "es_rejected_execution_exception", "rejected execution of write")
        stored = self.indices.setdefault(index, {})
        if doc_id in stored:
            return error(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [1])",
            )
        stored[doc_id] = doc
        self.created.append(doc_id)
        return {
            op: {
                **base,
                "_version": 1,
                "result": "created",
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": next(self._seq_no),
                "_primary_term": 1,
                "status": 201,
            }
        }


class BlackHole(HttpReceiver):
    """A dead destination: takes each request and answers nothing until released
    (then 503). ``open`` counts the requests it is holding or has held."""

    def __init__(self, hold_s: float = 300.0) -> None:
        super().__init__()
        self.release = threading.Event()
        self.hold_s = hold_s
        self.open = 0

    def start(self) -> BlackHole:
        super().start()
        return self

    def handle(self, request: Request) -> Reply:
        self.open += 1
        self.release.wait(self.hold_s)
        return Reply(503)


class WebhookBatchReceiver(HttpReceiver):
    """Checks each POST with the ``standardwebhooks`` package; keeps the verified payloads."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.webhook = Webhook(secret)
        self.batches: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.rejected = 0

    def start(self) -> WebhookBatchReceiver:
        super().start()
        return self

    def handle(self, request: Request) -> Reply:
        raw = _gunzip(request)
        try:
            if raw is None:
                raise WebhookVerificationError("undecodable body")
            payload = self.webhook.verify(raw, request.headers)
        except WebhookVerificationError:
            self.rejected += 1
            return Reply(401)
        self.batches.append(payload)
        self.ids.append(request.headers["webhook-id"])
        return Reply(204)


@dataclass(frozen=True)
class S3Object:
    key: str
    body: bytes  # as stored
    content_type: str | None
    content_encoding: str | None


class S3Server(_Waitable):
    """moto's S3 on 127.0.0.1 with SigV4 enforced, one bucket, one IAM user allowed ``s3:*``.

    moto keeps its backends and its auth switch per process: each server
    has its own user and bucket, and ``stop()`` puts the switch back.
    """

    REGION = "us-east-1"

    def __init__(self) -> None:
        super().__init__()
        self.bucket = f"chainlog-{uuid.uuid4().hex[:12]}"
        self.access_key_id = ""
        self.secret_access_key = ""
        self.puts: list[str] = []  # paths of object PUTs, in order
        self._server: BaseWSGIServer | None = None
        self._auth_before = float("inf")

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A destination config for this server's bucket."""
        return {
            "bucket": self.bucket,
            "region": self.REGION,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "endpoint_url": self.url,
            **overrides,
        }

    def start(self) -> S3Server:
        # moto takes seconds to import: only suites that use S3 pay for it
        from moto import settings
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.iam.models import iam_backends
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
        user = f"streamer-{uuid.uuid4().hex[:12]}"
        iam.create_user(region_name=self.REGION, user_name=user)
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(user, "s3", json.dumps(policy))
        key = iam.create_access_key(user)
        self.access_key_id, self.secret_access_key = key.access_key_id, key.secret_access_key
        self._auth_before = settings.INITIAL_NO_AUTH_ACTION_COUNT
        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

        class QuietHandler(MotoRequestHandler):
            def log(self, type: str, message: str, *args: Any) -> None:
                pass

        inner = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1",
            0,
            self._wrap(inner),
            threaded=True,
            request_handler=QuietHandler,
        )
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        status, _, body = self._signed("PUT", f"/{self.bucket}")
        assert status == 200, f"bucket not created: {status} {body!r}"
        return self

    def _wrap(self, inner: WSGIApplication) -> WSGIApplication:
        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            with self.cond:
                is_put = environ["REQUEST_METHOD"] == "PUT" and path.count("/") > 1
                status = self._take_failure() if is_put else None
                if is_put:
                    self.puts.append(path)
                self.cond.notify_all()
            if status is None:
                return inner(environ, start_response)
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            code = "SlowDown" if status == 503 else "InternalError"
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                "<Message>Please reduce your request rate.</Message></Error>"
            ).encode()
            start_response(
                f"{status} Error",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
            )
            return [body]

        return app

    def stop(self) -> None:
        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = self._auth_before
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _signed(self, method: str, path: str, query: str = "") -> tuple[int, httpx.Headers, bytes]:
        """A signed request; the answer's body raw, as stored (httpx would gunzip it)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{self.url}{path}" + (f"?{query}" if query else "")
        aws = AWSRequest(method=method, url=url, data=b"")
        creds = Credentials(self.access_key_id, self.secret_access_key)
        S3SigV4Auth(creds, "s3", self.REGION).add_auth(aws)
        headers = {k: str(v) for k, v in aws.headers.items()}
        with httpx.stream(method, url, headers=headers, timeout=WAIT_S) as response:
            return response.status_code, response.headers, b"".join(response.iter_raw())

    def list_keys(self, prefix: str = "") -> list[str]:
        """The bucket's keys that start with ``prefix``, sorted."""
        query = "list-type=2" + (f"&prefix={quote(prefix, safe='')}" if prefix else "")
        status, _, body = self._signed("GET", f"/{self.bucket}", query)
        assert status == 200, body
        ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
        return sorted(el.text or "" for el in ET.fromstring(body).findall("s3:Contents/s3:Key", ns))

    def get(self, key: str) -> S3Object:
        status, headers, body = self._signed("GET", f"/{self.bucket}/{key}")
        assert status == 200, body
        return S3Object(key, body, headers.get("content-type"), headers.get("content-encoding"))

    def objects(self) -> list[S3Object]:
        """Every object of the bucket, by key."""
        return [self.get(k) for k in self.list_keys()]
