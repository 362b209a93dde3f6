"""Amazon Security Lake: OCSF records as Parquet objects in the lake's bucket, as a custom source.

Each event becomes its OCSF 1.1.0 record (``formats.ocsf``, classed by
``ocsf_mappings`` first). A batch is written as one Parquet object per
OCSF class and event day, as Security Lake wants (one class per object;
partitions by the day of ``time``), under::

    ext/{source_name}/[{source_version}/]region={region}/accountId={account_id}/eventDay={YYYYMMDD}/{class_uid}-{digest}.parquet

``class_sources`` (``{"3002": "chainlog-auth", ...}``) gives a class its
own custom source name: Security Lake registers one class per custom
source, so a lake fed several classes needs one source per class.
``digest`` is a function of the batch id, the class and the day: a retried
batch overwrites its objects instead of adding some. A batch is retried
whole when any of its objects is refused.

Parquet columns are the OCSF attributes (nested objects as structs,
``time`` as epoch milliseconds); ``unmapped`` is a ``map<string,string>``
(values that are not strings are JSON text), as in Security Lake's own
tables, and a resource's ``data`` is JSON text: free-form values cannot
have one column type. Objects are zstd-compressed.

The bucket, its region and the credentials are those of ``s3``
(``BUCKET_KEYS``); the request is signed and sent by ``s3.put_object``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import Checker, Violations
from services.streamer.destinations.s3 import BUCKET_KEYS, bucket_url, check_bucket, put_object
from services.streamer.formats import ocsf

CONTENT_TYPE = "application/vnd.apache.parquet"
_SOURCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}\Z")
_ACCOUNT_RE = re.compile(r"^\d{12}\Z")


class SecurityLake:
    type = "security_lake"
    SECRET_FIELDS = ("secret_access_key",)
    #: Security Lake prefers objects of tens of MB to many small ones.
    MAX_BATCH = 10_000
    MAX_BYTES: int | None = 64 * 1024 * 1024

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config,
            (
                *BUCKET_KEYS,
                "source_name",
                "source_version",
                "account_id",
                "class_sources",
                "ocsf_mappings",
            ),
        )
        check_bucket(c)
        name_hint = "must be a custom source name: letters, digits, '_' and '-'"
        c.string("source_name", required=True, pattern=_SOURCE_RE, hint=name_hint)
        c.string("source_version", pattern=_VERSION_RE, hint="must be letters, digits, . _ -")
        c.string("account_id", required=True, pattern=_ACCOUNT_RE, hint="must be 12 digits")
        sources = c.raw.get("class_sources")
        if sources is not None:
            classes = ", ".join(str(k) for k in ocsf.CLASSES)
            if not isinstance(sources, dict):
                c.fail("class_sources", f"class_sources must map class ids ({classes}) to names")
            else:
                bad = False
                for class_uid, name in sources.items():
                    if not class_uid.isdigit() or int(class_uid) not in ocsf.CLASSES:
                        c.fail(f"class_sources.{class_uid}", f"must be one of {classes}")
                        bad = True
                    elif not isinstance(name, str) or _SOURCE_RE.match(name) is None:
                        c.fail(f"class_sources.{class_uid}", name_hint)
                        bad = True
                if not bad:
                    c.out["class_sources"] = dict(sources)
        c.rules("ocsf_mappings", ocsf.check_mappings)
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return bucket_url(config)

    def key(self, config: Mapping[str, Any], class_uid: int, day: str, batch_id: str) -> str:
        source = (config.get("class_sources") or {}).get(str(class_uid), config["source_name"])
        version = f"{config['source_version']}/" if config.get("source_version") else ""
        digest = hashlib.sha256(f"{batch_id}\x00{class_uid}\x00{day}".encode()).hexdigest()
        return (
            f"ext/{source}/{version}region={config.get('region', 'us-east-1')}/"
            f"accountId={config['account_id']}/eventDay={day}/{class_uid}-{digest[:32]}.parquet"
        )

    def split(self, events: Sequence[Event]) -> list[list[Event]]:
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(e)),
        )

    def objects(
        self, config: Mapping[str, Any], events: Sequence[Event]
    ) -> dict[tuple[int, str], list[dict[str, Any]]]:
        """The batch's OCSF records by ``(class_uid, eventDay)``, each group in seq order."""
        rules = config.get("ocsf_mappings") or ()
        groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
        for event in events:
            record = ocsf.record(event, rules)
            day = datetime.fromtimestamp(record["time"] / 1000, UTC).strftime("%Y%m%d")
            groups.setdefault((record["class_uid"], day), []).append(record)
        return groups

    def _files(
        self, config: Mapping[str, Any], events: Sequence[Event]
    ) -> dict[tuple[int, str], tuple[bytes, int]]:
        groups = self.objects(config, events)
        return {key: (parquet(records), len(records)) for key, records in groups.items()}

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        status: int | None = None
        # mapping and Parquet encoding of up to 10,000 events take a while: not on the loop
        files = await asyncio.to_thread(self._files, config, events)
        for (class_uid, day), (body, count) in files.items():
            result = await put_object(
                client,
                config,
                self.key(config, class_uid, day, batch_id),
                body,
                headers={"Content-Type": CONTENT_TYPE},
                count=count,
                timeout=timeout,
            )
            if result.outcome != "delivered":
                # objects are not in seq order across classes: the batch is resent whole,
                # and its objects written so far are overwritten, not doubled
                return Result(result.outcome, result.status, result.error, 0)
            status = result.status
        return Result("delivered", status, None, len(events))


def parquet(records: Sequence[Mapping[str, Any]]) -> bytes:
    """OCSF records of one class as one zstd-compressed Parquet file."""
    import pyarrow as pa  # imported here: seconds of startup the API does not need
    import pyarrow.parquet as pq

    rows = [_row(r) for r in records]
    unmapped = [row.pop("unmapped", {}) for row in rows]
    table = pa.Table.from_pylist(rows)
    kv = pa.map_(pa.string(), pa.string())
    table = table.append_column(
        pa.field("unmapped", kv), pa.array([list(u.items()) for u in unmapped], type=kv)
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with its free-form values as text, so every row has one column type."""
    row = dict(record)
    row["unmapped"] = {k: _json_text(v) for k, v in (record.get("unmapped") or {}).items()}
    for key in ("entity", "resources"):
        if key not in row:
            continue
        items = [row[key]] if key == "entity" else row[key]
        items = [{**i, "data": _json_text(i["data"])} if "data" in i else i for i in items]
        row[key] = items[0] if key == "entity" else items
    return row
