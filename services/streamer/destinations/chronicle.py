"""Google Security Operations (Chronicle): UDM events through the Chronicle API ``events.import``.

``POST {base}/v1/projects/{project_id}/locations/{location}/instances/{instance_id}/events:import``
with ``{"inlineSource": {"events": [{"udm": {...}}, ...]}}`` (one UDM event
per Chainlog event, ``formats.udm``), ``Authorization: Bearer <token>``.
``base`` is ``https://chronicle.{location}.rep.googleapis.com`` unless
``endpoint_url`` says otherwise. This is the Chronicle API method that
replaces the legacy Ingestion API's ``udmevents:batchCreate`` (which took
an ingestion API key and a ``customer_id``); it takes Google Cloud IAM
credentials with the ``chronicle.events.import`` permission, here a
service account.

The token: a JWT signed RS256 with the service account's private key
(``iss`` its ``client_email``, ``aud`` its ``token_uri``, ``scope``
``https://www.googleapis.com/auth/cloud-platform``, one hour), exchanged
at ``token_uri`` (``token_url`` overrides it) with the JWT bearer grant of
RFC 7523. It is cached until five minutes before it expires; a 401 drops it
and retries once (``oauth``).

``events.import`` takes a batch whole or refuses it whole ("an error in one
entity will cause the entire request to be rejected"): a 400 fails the
batch. Chronicle does not de-duplicate: ``metadata.product_log_id`` and
``additional.id`` carry the event id for queries that do.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from libs.common.ssrf import UnsafeDestination, check_url_syntax
from services.streamer.destinations import oauth
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Answer,
    Event,
    Result,
    cut,
    explained,
    redact,
    request,
    send_parts,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import Checker, Violations
from services.streamer.formats import udm

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600
MAX_SERVICE_ACCOUNT = 16 * 1024
_LOCATION_RE = re.compile(r"^[a-z][a-z0-9-]{1,62}\Z")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]\Z")
_INSTANCE_RE = re.compile(r"^[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z")
_ENVELOPE = len(b'{"inlineSource":{"events":[]}}')


class Chronicle:
    type = "chronicle"
    SECRET_FIELDS = ("service_account",)
    MAX_BATCH = 500
    #: What one request carries here (the legacy ingestion API's limit was 1 MB).
    MAX_BYTES: int | None = 1_000_000

    def __init__(
        self, tokens: oauth.TokenCache | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self.tokens = tokens or oauth.TokenCache()
        self.wall = wall

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config,
            (
                "service_account",
                "project_id",
                "location",
                "instance_id",
                "endpoint_url",
                "token_url",
                "udm_mappings",
            ),
        )
        account = _service_account(c)
        c.string(
            "location",
            default="us",
            max_len=63,
            pattern=_LOCATION_RE,
            hint="must be a region such as us or europe-west2",
        )
        c.string(
            "instance_id",
            required=True,
            pattern=_INSTANCE_RE,
            hint="must be the instance's customer id (a UUID)",
        )
        project = c.string(
            "project_id", max_len=30, pattern=_PROJECT_RE, hint="must be a Google Cloud project id"
        )
        if project is None and account is not None and "project_id" not in c.raw:
            if _PROJECT_RE.match(str(account.get("project_id", ""))):
                c.out["project_id"] = account["project_id"]
            else:
                c.fail("project_id", "project_id is required (the service account names none)")
        c.url("endpoint_url", required=False, base=True)
        c.url("token_url", required=False)
        c.rules("udm_mappings", udm.check_mappings)
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        location = str(config.get("location", "us"))
        base = config.get("endpoint_url") or f"https://chronicle.{location}.rep.googleapis.com"
        parent = "/".join(
            [
                "projects",
                quote(str(config["project_id"])),
                "locations",
                quote(location),
                "instances",
                quote(str(config["instance_id"])),
            ]
        )
        return f"{base}/v1/{parent}/events:import"

    def entry(self, config: Mapping[str, Any], event: Event) -> bytes:
        return orjson.dumps({"udm": udm.event(event, config.get("udm_mappings") or ())})

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        cfg = config or {}
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(self.entry(cfg, e)) + 1,
            overhead=_ENVELOPE,
        )

    def assertion(self, account: Mapping[str, Any], token_url: str) -> str:
        """The signed JWT of RFC 7523 section 2.1 for ``account``."""
        now = int(self.wall())
        header = {"alg": "RS256", "typ": "JWT", "kid": str(account.get("private_key_id", ""))}
        claims = {
            "iss": account["client_email"],
            "scope": SCOPE,
            "aud": token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}".encode()
        key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)  # checked by validate
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64(signature)}"

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        entries = [self.entry(config, e) for e in events]
        account = orjson.loads(str(config["service_account"]))
        token_url = str(config.get("token_url") or account["token_uri"])
        key = oauth.cache_key(token_url, str(config["service_account"]))

        async def get_token() -> oauth.Fetched:
            form = {"grant_type": JWT_BEARER, "assertion": self.assertion(account, token_url)}
            return await oauth.fetch(
                client,
                token_url,
                form,
                timeout=timeout,
                config=config,
                secret_fields=self.SECRET_FIELDS,
            )

        async def send_one(part: range) -> Result:
            body = (
                b'{"inlineSource":{"events":[' + b",".join(entries[part.start : part.stop]) + b"]}}"
            )

            async def post(token: str) -> Answer:
                return await request(
                    client,
                    "POST",
                    self.endpoint(config),
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "authorization": f"Bearer {token}",
                    },
                    timeout=timeout,
                )

            answer = await oauth.authorized(self.tokens, key, get_token, post)
            if isinstance(answer, Result):
                return answer
            detail = redact(_error(answer.body), config, self.SECRET_FIELDS)
            return explained(answer.result(0, total=len(part)), detail)

        sizes = [len(x) + 1 for x in entries]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES, overhead=_ENVELOPE)
        return await send_parts(ranges, send_one)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _service_account(c: Checker) -> dict[str, Any] | None:
    """The service account key (a JSON object, or its text), stored as compact JSON text.

    Nothing of it is echoed in a message: it holds the private key.
    """
    raw = c.raw.get("service_account")
    if raw is None:
        c.fail("service_account", "service_account is required")
        return None
    account: Any = raw
    if isinstance(raw, str) and len(raw) <= MAX_SERVICE_ACCOUNT:
        try:
            account = orjson.loads(raw)
        except orjson.JSONDecodeError:
            account = None
    if not isinstance(account, dict) or account.get("type") != "service_account":
        c.fail("service_account", "service_account must be a service account key (JSON)")
        return None
    if not isinstance(account.get("client_email"), str) or not account["client_email"]:
        c.fail("service_account", "service_account has no client_email")
        return None
    try:
        key = serialization.load_pem_private_key(str(account.get("private_key", "")).encode(), None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        c.fail("service_account", "service_account's private_key is not an RSA private key")
        return None
    token_uri = account.get("token_uri")
    try:
        check_url_syntax(token_uri if isinstance(token_uri, str) else "")
    except UnsafeDestination:
        c.fail("service_account", "service_account's token_uri is not an http(s) URL")
        return None
    text = orjson.dumps(account).decode()
    if len(text) > MAX_SERVICE_ACCOUNT:
        c.fail(
            "service_account", f"service_account must be at most {MAX_SERVICE_ACCOUNT} characters"
        )
        return None
    c.out["service_account"] = text
    return dict(account)


def _error(body: bytes) -> str:
    """``status: message`` of a Google API error ``{"error": {"code", "status", "message"}}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return f"{error.get('status', '')}: {error.get('message', '')}"
    return ""
