"""Amazon S3 and S3-compatible stores: one gzipped JSON Lines object per batch.

The object key is::

    {prefix}{workspace_id}/{YYYY}/{MM}/{DD}/{first_seq:020d}-{last_seq:020d}.jsonl.gz

dated by the first event's ``received_at`` (UTC). It is a function of the
batch alone, so a retried batch overwrites the same object instead of
adding one: effectively once, as long as the caller retries the same
events (a batch cut differently after a restart can overlap an earlier
object; readers deduplicate by ``seq``). The body is one event per line
in the order given (seq order), gzipped; the object is stored with
``Content-Type: application/x-ndjson`` and ``Content-Encoding: gzip``.

The request is signed with botocore's SigV4 (``S3SigV4Auth``, payload
signed) and sent with the caller's httpx client, so the SSRF guard sees
the connection like any other delivery. With ``endpoint_url`` (MinIO,
Ceph, R2, ...) the path style ``{endpoint_url}/{bucket}/{key}`` is used;
without it, AWS virtual-hosted style ``https://{bucket}.s3.{region}.amazonaws.com``
(path style for bucket names with dots, which the wildcard certificate
does not cover).

``format: ocsf`` writes each event's OCSF record as its line
(``base.shaper``). ``security_lake`` writes Parquet objects with the same
signing and ``PutObject`` code (``put_object`` here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from libs.common.checkpoint import CHECKPOINT_ACTION
from libs.common.storage import sigv4_headers
from libs.common.timeutil import parse_rfc3339
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    compress,
    cut,
    request,
    send_parts,
    shaper,
    split_by,
    without_secrets,
    workspace_of,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

CONTENT_TYPE = "application/x-ndjson"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+\Z")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_./=-]{0,512}\Z")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}\Z")
_ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9+=.@_-]{1,128}\Z")
_CODE_RE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
#: S3 error codes worth another try whatever their status (RequestTimeout is a 400).
_RETRY_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})


#: The config keys of a bucket and its credentials, shared with ``security_lake``.
BUCKET_KEYS = ("bucket", "region", "access_key_id", "secret_access_key", "endpoint_url")


def check_bucket(c: Checker) -> None:
    """``BUCKET_KEYS``: syntax only; the endpoint is resolved by the caller's SSRF check."""
    bucket = c.string(
        "bucket",
        required=True,
        max_len=63,
        pattern=_BUCKET_RE,
        hint="must be a bucket name: 3 to 63 lower-case letters, digits, '.' and '-'",
    )
    if bucket is not None and (".." in bucket or _IPV4_RE.match(bucket)):
        c.fail("bucket", "bucket must not contain '..' or look like an IP address")
    c.string(
        "region",
        default="us-east-1",
        max_len=32,
        pattern=_REGION_RE,
        hint="must be a region name such as eu-west-1",
    )
    c.string(
        "access_key_id",
        required=True,
        max_len=128,
        pattern=_ACCESS_KEY_RE,
        hint="must be an access key id",
    )
    c.secret("secret_access_key")
    c.url("endpoint_url", required=False, base=True)


def check_prefix(c: Checker) -> None:
    """``prefix``: the start of every object key (``chainlog/`` unless set)."""
    prefix = c.raw.get("prefix", "chainlog/")
    if not isinstance(prefix, str) or _PREFIX_RE.match(prefix) is None:
        c.fail("prefix", "prefix must be letters, digits and _ . / = - (at most 512)")
    elif (
        prefix.startswith("/")
        or "//" in prefix
        or any(part in (".", "..") for part in prefix.split("/"))
    ):
        c.fail("prefix", "prefix must not start with '/' or hold empty, '.' or '..' parts")
    else:
        c.out["prefix"] = prefix


def bucket_url(config: Mapping[str, Any]) -> str:
    """The bucket's URL: keys are appended to it."""
    bucket = str(config["bucket"])
    if config.get("endpoint_url"):
        return f"{config['endpoint_url']}/{bucket}"
    region = config.get("region", "us-east-1")
    if "." in bucket:
        return f"https://s3.{region}.amazonaws.com/{bucket}"
    return f"https://{bucket}.s3.{region}.amazonaws.com"


def signed_put(
    config: Mapping[str, Any], key: str, body: bytes, headers: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The URL and headers of a SigV4-signed ``PutObject`` (signed for about 15 minutes)."""
    url = f"{bucket_url(config)}/{quote(key, safe='/-_.~')}"
    return url, sigv4_headers(
        "PUT",
        url,
        region=str(config.get("region", "us-east-1")),
        access_key_id=str(config["access_key_id"]),
        secret_access_key=str(config["secret_access_key"]),
        headers=headers,
        body=body,
    )


async def put_object(
    client: httpx.AsyncClient,
    config: Mapping[str, Any],
    key: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    count: int,
    timeout: float,  # noqa: ASYNC109
) -> Result:
    """One ``PutObject`` of ``count`` events; S3's error code read from the answer."""
    url, signed = signed_put(config, key, body, headers)
    answer = await request(client, "PUT", url, content=body, headers=signed, timeout=timeout)
    result = answer.result(0, total=count)
    if result.outcome == "delivered" or answer.status is None:
        return result
    match = _CODE_RE.search(answer.body)
    if match is None:
        return result
    code = match.group(1).decode()
    outcome = "retry" if code in _RETRY_CODES else result.outcome
    return Result(outcome, answer.status, f"S3 {answer.status} {code}", 0)


class S3:
    type = "s3"
    SECRET_FIELDS = ("secret_access_key",)
    #: S3 favours fewer, larger objects; 5 GB is its limit for one PUT.
    MAX_BATCH = 10_000
    MAX_BYTES: int | None = 64 * 1024 * 1024

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(config, (*BUCKET_KEYS, "prefix", *FORMAT_KEYS))
        check_bucket(c)
        check_prefix(c)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return bucket_url(config)

    def key(self, config: Mapping[str, Any], events: Sequence[Event]) -> str:
        day = parse_rfc3339(events[0]["received_at"]).strftime("%Y/%m/%d")
        if events[0]["action"] == CHECKPOINT_ACTION:
            # signed checkpoints (docs/proofs.md): beside the events, never over them
            return (
                f"{config.get('prefix', 'chainlog/')}{workspace_of(events)}/checkpoints/{day}/"
                f"{int(events[-1]['seq']):020d}-{events[-1]['id']}.jsonl.gz"
            )
        seqs = [int(e["seq"]) for e in events]
        return (
            f"{config.get('prefix', 'chainlog/')}{workspace_of(events)}/{day}/"
            f"{min(seqs):020d}-{max(seqs):020d}.jsonl.gz"
        )

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        shape = shaper(config or {})
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(shape(e))) + 1,
        )

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        shape = shaper(config)
        lines = [orjson.dumps(shape(e)) + b"\n" for e in events]

        async def send_one(part: range) -> Result:
            # the key comes from the part's seqs: a resent part overwrites its object
            key = self.key(config, events[part.start : part.stop])
            body = compress(b"".join(lines[part.start : part.stop]))
            headers = {"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"}
            return await put_object(
                client, config, key, body, headers=headers, count=len(part), timeout=timeout
            )

        sizes = [len(x) for x in lines]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES)
        return await send_parts(ranges, send_one)
