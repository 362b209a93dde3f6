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
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from libs.common.timeutil import parse_rfc3339
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Checker,
    Event,
    Result,
    Violations,
    compress,
    request,
    split_by,
    without_secrets,
    workspace_of,
)

CONTENT_TYPE = "application/x-ndjson"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_IPV4_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+\Z")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_./=-]{0,512}\Z")
_REGION_RE = re.compile(r"^[a-z0-9-]{1,32}\Z")
_ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9+=.@_-]{1,128}\Z")
_CODE_RE = re.compile(rb"<Code>([A-Za-z0-9.]{1,64})</Code>")
#: S3 error codes worth another try whatever their status (RequestTimeout is a 400).
_RETRY_CODES = frozenset({"RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable"})


class S3:
    type = "s3"
    SECRET_FIELDS = ("secret_access_key",)
    #: S3 favours fewer, larger objects; 5 GB is its limit for one PUT.
    MAX_BATCH = 10_000
    MAX_BYTES: int | None = 64 * 1024 * 1024

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config,
            ("bucket", "prefix", "region", "access_key_id", "secret_access_key", "endpoint_url"),
        )
        bucket = c.string(
            "bucket",
            required=True,
            max_len=63,
            pattern=_BUCKET_RE,
            hint="must be a bucket name: 3 to 63 lower-case letters, digits, '.' and '-'",
        )
        if bucket is not None and (".." in bucket or _IPV4_RE.match(bucket)):
            c.fail("bucket", "bucket must not contain '..' or look like an IP address")
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
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        """The bucket's URL: keys are appended to it."""
        bucket = str(config["bucket"])
        if config.get("endpoint_url"):
            return f"{config['endpoint_url']}/{bucket}"
        region = config.get("region", "us-east-1")
        if "." in bucket:
            return f"https://s3.{region}.amazonaws.com/{bucket}"
        return f"https://{bucket}.s3.{region}.amazonaws.com"

    def key(self, config: Mapping[str, Any], events: Sequence[Event]) -> str:
        day = parse_rfc3339(events[0]["received_at"]).strftime("%Y/%m/%d")
        seqs = [int(e["seq"]) for e in events]
        return (
            f"{config.get('prefix', 'chainlog/')}{workspace_of(events)}/{day}/"
            f"{min(seqs):020d}-{max(seqs):020d}.jsonl.gz"
        )

    def split(self, events: Sequence[Event]) -> list[list[Event]]:
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(e)) + 1,
        )

    def signed_put(
        self, config: Mapping[str, Any], key: str, body: bytes
    ) -> tuple[str, dict[str, str]]:
        """The URL and headers of a SigV4-signed ``PutObject`` (signed for about 15 minutes)."""
        url = f"{self.endpoint(config)}/{quote(key, safe='/-_.~')}"
        aws = AWSRequest(
            method="PUT",
            url=url,
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"},
        )
        credentials = Credentials(str(config["access_key_id"]), str(config["secret_access_key"]))
        S3SigV4Auth(credentials, "s3", str(config.get("region", "us-east-1"))).add_auth(aws)
        return url, {k: str(v) for k, v in aws.headers.items()}

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        if not events:
            return Result("delivered", None, None, 0)
        body = compress(b"".join(orjson.dumps(e) + b"\n" for e in events))
        url, headers = self.signed_put(config, self.key(config, events), body)
        answer = await request(client, "PUT", url, content=body, headers=headers, timeout=timeout)
        result = answer.result(0, total=len(events))
        if result.outcome == "delivered" or answer.status is None:
            return result
        match = _CODE_RE.search(answer.body)
        if match is None:
            return result
        code = match.group(1).decode()
        outcome = "retry" if code in _RETRY_CODES else result.outcome
        return Result(outcome, answer.status, f"S3 {answer.status} {code}", 0)
