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


# ---- TLS material, syslog, Azure Monitor Logs Ingestion, Google SecOps, OTLP ---------------
# ruff: noqa: E402 (this part's imports stay with it, below the receivers it does not change)

import hashlib
import ipaddress
import os
import socket
import socketserver
import ssl
import tempfile
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


class TestCA:
    """A throw-away certificate authority (EC P-256) for TLS tests."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "Chainlog Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, *names: str, client: bool = False) -> tuple[str, str]:
        """``(cert_pem, key_pem)`` for DNS names and IP addresses ``names``."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = datetime.now(UTC)
        usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else None
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([usage or x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        )
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _temp_pem(*parts: str) -> str:
    """A file holding PEM text, for ``ssl`` (which loads keys from files only)."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write("\n".join(parts))
    return handle.name


@dataclass(frozen=True)
class SyslogMessage:
    """One RFC 5424 message as received; ``msg`` without its BOM (``bom`` says if it had one)."""

    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: list[tuple[str, list[tuple[str, str]]]]
    msg: str
    bom: bool

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8

    def json(self) -> Any:
        return json.loads(self.msg)


def parse_5424(data: bytes) -> SyslogMessage:
    """Parse one RFC 5424 message; ValueError if it is not one."""
    if not data.startswith(b"<"):
        raise ValueError("no PRI")
    end = data.index(b">")
    pri = int(data[1:end])
    header, rest = data[end + 1 :], b""
    fields = header.split(b" ", 6)
    if len(fields) < 7:
        raise ValueError("short header")
    version, timestamp, hostname, app_name, procid, msgid, rest = fields
    sd: list[tuple[str, list[tuple[str, str]]]] = []
    if rest.startswith(b"-"):
        rest = rest[1:]
    else:
        while rest.startswith(b"["):
            element, rest = _sd_element(rest)
            sd.append(element)
    if rest.startswith(b" "):
        rest = rest[1:]
    elif rest:
        raise ValueError("no space after structured data")
    bom = rest.startswith(b"\xef\xbb\xbf")
    return SyslogMessage(
        pri,
        int(version),
        timestamp.decode(),
        hostname.decode(),
        app_name.decode(),
        procid.decode(),
        msgid.decode(),
        sd,
        (rest[3:] if bom else rest).decode("utf-8"),
        bom,
    )


def _sd_element(data: bytes) -> tuple[tuple[str, list[tuple[str, str]]], bytes]:
    text = data.decode("utf-8", "surrogateescape")
    i = 1
    sd_id_end = min(x for x in (text.find(" ", i), text.find("]", i)) if x >= 0)
    sd_id, i = text[i:sd_id_end], sd_id_end
    params: list[tuple[str, str]] = []
    while text[i] == " ":
        eq = text.index("=", i)
        name, i = text[i + 1 : eq], eq + 2  # past ="
        value = []
        while text[i] != '"':
            if text[i] == "\\" and text[i + 1] in '"\\]':
                i += 1
            value.append(text[i])
            i += 1
        params.append((name, "".join(value)))
        i += 1
    if text[i] != "]":
        raise ValueError("unterminated SD element")
    rest = text[i + 1 :].encode("utf-8", "surrogateescape")
    return (sd_id, params), rest


class SyslogReceiver(_Waitable):
    """A syslog server on 127.0.0.1 over TCP, or TLS with ``cert_pem``/``key_pem``: reads
    octet-counted frames (RFC 5425/6587), keeps every message parsed, in arrival order.

    ``client_ca`` makes it require a client certificate issued by that CA.
    ``handshakes_failed`` counts refused TLS handshakes.
    """

    def __init__(
        self,
        *,
        cert_pem: str | None = None,
        key_pem: str | None = None,
        client_ca: str | None = None,
    ) -> None:
        super().__init__()
        self.messages: list[SyslogMessage] = []
        self.connections = 0
        self.closed = 0
        self.handshakes_failed = 0
        self.context: ssl.SSLContext | None = None
        if cert_pem and key_pem:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            path = _temp_pem(cert_pem, key_pem)
            try:
                self.context.load_cert_chain(path)
            finally:
                os.unlink(path)
            if client_ca:
                self.context.verify_mode = ssl.CERT_REQUIRED
                self.context.load_verify_locations(cadata=client_ca)
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def start(self) -> SyslogReceiver:
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                if receiver.context is not None:
                    try:
                        conn = receiver.context.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError):
                        with receiver.cond:
                            receiver.handshakes_failed += 1
                            receiver.cond.notify_all()
                        return
                with receiver.cond:
                    receiver.connections += 1
                buffer = b""
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except (ssl.SSLError, OSError):
                        break
                    if not chunk:
                        break
                    buffer += chunk
                    buffer = receiver._frames(buffer)
                if isinstance(conn, ssl.SSLSocket):
                    try:
                        conn.unwrap()  # our close_notify back
                    except (ssl.SSLError, OSError):
                        pass
                with receiver.cond:
                    receiver.closed += 1
                    receiver.cond.notify_all()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def _frames(self, buffer: bytes) -> bytes:
        """Take every complete ``LEN SP MSG`` frame off ``buffer``; the rest back."""
        while b" " in buffer:
            length, _, rest = buffer.partition(b" ")
            if not length.isdigit():
                raise ValueError(f"not octet counting: {buffer[:20]!r}")
            if len(rest) < int(length):
                break
            message = parse_5424(rest[: int(length)])
            buffer = rest[int(length) :]
            with self.cond:
                self.messages.append(message)
                self.cond.notify_all()
        return buffer

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class UdpSyslogReceiver(_Waitable):
    """RFC 5426: one message per datagram, on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[SyslogMessage] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> UdpSyslogReceiver:
        def serve() -> None:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                with self.cond:
                    self.messages.append(parse_5424(data))
                    self.cond.notify_all()

        threading.Thread(target=serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token if scheme == "Bearer" and token else None


class LogsIngestionReceiver(HttpReceiver):
    """Azure Monitor's Logs Ingestion API and the Entra ID token endpoint, on one server.

    ``POST /{tenant}/oauth2/v2.0/token`` (client credentials for the
    ``https://monitor.azure.com/.default`` scope) issues bearer tokens;
    ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01``
    takes a JSON array (gzip allowed) of at most 1 MB, every record with
    ``TimeGenerated``, answers 204. ``expire_tokens()`` makes every token
    issued so far answer 401, as a revoked or expired one does.
    """

    MAX_BYTES = 1024 * 1024

    def __init__(
        self, *, tenant_id: str, client_id: str, client_secret: str, dcr: str, stream: str
    ) -> None:
        super().__init__()
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.dcr, self.stream = dcr, stream
        self.tokens_issued: list[str] = []
        self._valid: set[str] = set()
        self.records: list[dict[str, Any]] = []
        self.batch_sizes: list[int] = []
        self.expires_in = 3599

    def start(self) -> LogsIngestionReceiver:
        super().start()
        return self

    def expire_tokens(self) -> None:
        with self.cond:
            self._valid.clear()

    def failure(self, status: int) -> Reply:
        return _json(status, {"error": {"code": "ServiceUnavailable", "message": "Try again"}})

    def handle(self, request: Request) -> Reply:
        path = urlsplit(request.path)
        if path.path == f"/{self.tenant_id}/oauth2/v2.0/token":
            return self._token(request)
        if path.path != f"/dataCollectionRules/{self.dcr}/streams/{self.stream}":
            return _json(404, {"error": {"code": "NotFound", "message": "no such rule"}})
        if parse_qs(path.query).get("api-version") != ["2023-01-01"]:
            return _json(400, {"error": {"code": "InvalidApiVersion", "message": "api-version"}})
        if _bearer(request) not in self._valid:
            return _json(401, {"error": {"code": "InvalidToken", "message": "token expired"}})
        raw = _gunzip(request)
        if raw is None or request.headers.get("content-type") != "application/json":
            return _json(400, {"error": {"code": "InvalidContent", "message": "not JSON"}})
        if len(raw) > self.MAX_BYTES or len(request.body) > self.MAX_BYTES:
            return _json(413, {"error": {"code": "ContentLengthLimitExceeded", "message": "1 MB"}})
        try:
            records = json.loads(raw)
        except ValueError:
            return _json(400, {"error": {"code": "InvalidJson", "message": "bad JSON"}})
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and isinstance(r.get("TimeGenerated"), str) for r in records
        ):
            return _json(400, {"error": {"code": "InvalidRecords", "message": "TimeGenerated"}})
        self.records.extend(records)
        self.batch_sizes.append(len(records))
        return Reply(204)

    def _token(self, request: Request) -> Reply:
        form = _form(request)
        if form.get("grant_type") != "client_credentials" or form.get("scope") != (
            "https://monitor.azure.com/.default"
        ):
            return _json(400, {"error": "invalid_request", "error_description": "AADSTS900144"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            description = (
                f"AADSTS7000215: Invalid client secret provided for {form.get('client_id')}:"
                f" {form.get('client_secret')}"
            )
            return _json(401, {"error": "invalid_client", "error_description": description})
        token = f"aad-{len(self.tokens_issued) + 1}-{uuid.uuid4().hex}"
        self.tokens_issued.append(token)
        self._valid.add(token)
        return _json(
            200, {"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token}
        )


def service_account(token_uri: str, project_id: str = "chainlog-test") -> dict[str, Any]:
    """A Google service account key (a new RSA key) whose ``token_uri`` is ``token_uri``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        "client_email": f"streamer@{project_id}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ChronicleReceiver(HttpReceiver):
    """Google's OAuth token endpoint (JWT bearer grant) and the Chronicle API's ``events:import``.

    ``POST /token`` verifies the assertion as Google does: RS256 signature
    by the service account's key, ``iss``, ``aud`` (this URL), ``scope``,
    ``iat``/``exp``. ``POST /v1/projects/{p}/locations/{l}/instances/{i}/events:import``
    checks the bearer token and that every ``inlineSource.events[].udm``
    has ``metadata.event_timestamp`` and a known ``metadata.event_type``;
    one bad event refuses the whole request (400), as the API does.
    """

    EVENT_TYPES = frozenset(
        {
            "USER_LOGIN",
            "USER_LOGOUT",
            "USER_CREATION",
            "USER_DELETION",
            "USER_CHANGE_PASSWORD",
            "USER_CHANGE_PERMISSIONS",
            "USER_UNCATEGORIZED",
            "USER_RESOURCE_ACCESS",
            "USER_RESOURCE_CREATION",
            "USER_RESOURCE_DELETION",
            "USER_RESOURCE_UPDATE_CONTENT",
            "USER_RESOURCE_UPDATE_PERMISSIONS",
            "SETTING_CREATION",
            "SETTING_MODIFICATION",
            "SETTING_DELETION",
            "STATUS_UPDATE",
            "GENERIC_EVENT",
        }
    )

    def __init__(self, *, project: str, location: str, instance: str) -> None:
        super().__init__()
        self.project, self.location, self.instance = project, location, instance
        self.public_keys: dict[str, Any] = {}  # client_email -> public key
        self.assertions: list[dict[str, Any]] = []
        self.tokens_issued: list[str] = []
        self._valid: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.batch_sizes: list[int] = []

    def start(self) -> ChronicleReceiver:
        super().start()
        return self

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    def trust(self, account: dict[str, Any]) -> None:
        """Accept assertions signed by ``account``'s key."""
        key = serialization.load_pem_private_key(account["private_key"].encode(), None)
        self.public_keys[account["client_email"]] = key.public_key()

    def expire_tokens(self) -> None:
        with self.cond:
            self._valid.clear()

    @staticmethod
    def _error(status: int, code: str, message: str) -> Reply:
        return _json(status, {"error": {"code": status, "status": code, "message": message}})

    def failure(self, status: int) -> Reply:
        return self._error(status, "UNAVAILABLE", "The service is currently unavailable.")

    def handle(self, request: Request) -> Reply:
        if request.path == "/token":
            return self._token(request)
        parent = f"projects/{self.project}/locations/{self.location}/instances/{self.instance}"
        if request.path != f"/v1/{parent}/events:import":
            return self._error(404, "NOT_FOUND", "Method not found.")
        if _bearer(request) not in self._valid:
            return self._error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        try:
            doc = json.loads(request.body)
            events = doc["inlineSource"]["events"]
            udms = [e["udm"] for e in events]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        for i, udm in enumerate(udms):
            metadata = udm.get("metadata") if isinstance(udm, dict) else None
            if (
                not isinstance(metadata, dict)
                or metadata.get("event_type") not in self.EVENT_TYPES
                or not isinstance(metadata.get("event_timestamp"), str)
            ):
                return self._error(400, "INVALID_ARGUMENT", f"event {i}: invalid UDM metadata")
        self.events.extend(udms)
        self.batch_sizes.append(len(udms))
        return _json(200, {})

    def _token(self, request: Request) -> Reply:
        form = _form(request)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _json(400, {"error": "unsupported_grant_type"})
        try:
            header_b64, claims_b64, signature_b64 = form["assertion"].split(".")
            header = json.loads(_b64url(header_b64))
            claims = json.loads(_b64url(claims_b64))
            key = self.public_keys[claims["iss"]]
            key.verify(
                _b64url(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid JWT."})
        now = time.time()
        if (
            header.get("alg") != "RS256"
            or claims.get("aud") != self.token_url
            or claims.get("scope") != "https://www.googleapis.com/auth/cloud-platform"
            or not claims.get("iat", now + 1) - 300 <= now < claims.get("exp", 0)
            or claims["exp"] - claims["iat"] > 3600
        ):
            return _json(400, {"error": "invalid_grant", "error_description": "Invalid claims."})
        self.assertions.append(claims)
        token = f"ya29.{hashlib.sha256(uuid.uuid4().bytes).hexdigest()}"
        self.tokens_issued.append(token)
        self._valid.add(token)
        return _json(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


class OtlpReceiver(HttpReceiver):
    """An OpenTelemetry collector's OTLP/HTTP logs receiver: ``POST /v1/logs``, JSON or protobuf.

    Checks the ``ExportLogsServiceRequest`` shape (resource attributes,
    scope logs, records with ``timeUnixNano`` and attributes) and keeps
    each request as JSON (a protobuf one converted) in ``requests_json``.
    ``api_key`` requires that ``x-api-key`` header.
    """

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.requests_json: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []

    def start(self) -> OtlpReceiver:
        super().start()
        return self

    def failure(self, status: int) -> Reply:
        return _json(status, {"code": 14, "message": "unavailable"})

    def handle(self, request: Request) -> Reply:
        if request.path != "/v1/logs":
            return _json(404, {"code": 5, "message": "not found"})
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return _json(
                401, {"code": 16, "message": f"bad key {request.headers.get('x-api-key')}"}
            )
        raw = _gunzip(request)
        kind = request.headers.get("content-type")
        try:
            if raw is None:
                raise ValueError("undecodable body")
            if kind == "application/json":
                doc = json.loads(raw)
            elif kind == "application/x-protobuf":
                from google.protobuf import json_format
                from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

                message = logs_service_pb2.ExportLogsServiceRequest()
                message.ParseFromString(raw)
                doc = json_format.MessageToDict(message, use_integers_for_enums=True)
            else:
                return _json(415, {"code": 3, "message": f"unsupported {kind}"})
            records = self._check(doc)
        except (ValueError, KeyError, TypeError) as exc:
            return _json(400, {"code": 3, "message": str(exc)})
        self.requests_json.append(doc)
        self.records.extend(records)
        return _json(200, {})

    @staticmethod
    def _check(doc: Any) -> list[dict[str, Any]]:
        records = []
        for resource_logs in doc["resourceLogs"]:
            attributes = {a["key"] for a in resource_logs["resource"]["attributes"]}
            if "service.name" not in attributes:
                raise ValueError("resource without service.name")
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    int(record["timeUnixNano"])
                    if not isinstance(record["attributes"], list):
                        raise ValueError("attributes must be a list of key-values")
                    records.append(record)
        if not records:
            raise ValueError("no log records")
        return records
