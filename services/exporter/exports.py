"""Export jobs: the file an auditor downloads, written straight from PostgreSQL.

A job is claimed with a lease (``exports.lease_until``), so two exporters
never write the same export and a crashed one's job is taken over when its
lease runs out (``services/exporter/jobs.py``, shared with evidence packs).
The gateway's Kafka message starts a job at once; the sweep finds any job
that had no message (a gateway that died after its commit) or lost its
worker. Rerunning a job writes the same rows again: the file is written to
a temporary path and stored only when whole.

CSV is made by PostgreSQL itself (``COPY (SELECT ...) TO STDOUT CSV``):
it parses each stored body once, quotes per RFC 4180, and streams; this
process only hashes and writes the bytes. JSON Lines are the stored bodies
with the hash and geolocation appended, no parsing at all. Both read one
REPEATABLE READ snapshot, so the counts in the export's record describe
exactly the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import kafka, sealing, secretbox, subjects
from libs.common.exportformat import (
    DERIVED_COLUMNS,
    EVENT_COLUMNS,
    INTEGER_COLUMNS,
    JSON_COLUMNS,
    PERSONAL_COLUMN,
    csv_decoder,
)
from libs.common.logs import Logger
from libs.common.sealing import personal
from libs.common.secretbox import SecretBox
from libs.common.settings import Settings
from libs.common.storage import HashingWriter, Storage
from services.exporter.jobs import LeasedJobs, Output, Written
from services.ingest.query import EXPORT_FILTERS, filter_clauses

CHUNK = 1 << 20
#: Past the pool's 60-second statement timeout: a large export takes longer.
JOB_TIMEOUT_S = 3600.0


def _sql_type(name: str) -> str:
    if name in INTEGER_COLUMNS:
        return "bigint"
    return "json" if name in JSON_COLUMNS else "text"


def _cell(name: str) -> str:
    if name == "seq":
        return "e.seq"
    if name in INTEGER_COLUMNS or name in JSON_COLUMNS:
        return f'x."{name}"'
    return f'chainlog_csv_safe(x."{name}") AS "{name}"'


# json_to_record reads each body once with PostgreSQL's streaming parser and
# keeps only these fields; JSON cells keep the stored body's compact text.
_RECORD = ", ".join(f'"{n}" {_sql_type(n)}' for n in EVENT_COLUMNS if n != "seq")
assert DERIVED_COLUMNS == ("hash", "ip_country", "ip_city")
_CSV_SELECT = (
    "SELECT "
    + ", ".join(_cell(n) for n in EVENT_COLUMNS)
    + ", encode(e.hash, 'hex') AS hash, chainlog_csv_safe(e.ip_country) AS ip_country,"
    " chainlog_csv_safe(e.ip_city) AS ip_city FROM ({rows}) AS e"
    " CROSS JOIN LATERAL json_to_record(convert_from(e.body, 'UTF8')::json)"
    f" AS x({_RECORD}) ORDER BY e.seq"
)
# A JSON Lines record is the stored body with the derived fields appended
# (exportformat.jsonl_line, in SQL). Written as "CSV" with a delimiter and
# quote that canonical JSON never holds raw, so each line comes out verbatim.
_JSONL_SELECT = (
    "SELECT left(convert_from(e.body, 'UTF8'), -1) || ',\"hash\":\"' || encode(e.hash, 'hex')"
    " || '\",\"ip_country\":' || coalesce(to_json(e.ip_country)::text, 'null')"
    " || ',\"ip_city\":' || coalesce(to_json(e.ip_city)::text, 'null') || '}'"
    " FROM ({rows}) AS e ORDER BY e.seq"
)
_ROWS = "SELECT seq, body, hash, ip_country, ip_city FROM events{where} AND seq >= ${lo} AND seq <= ${hi}"
#: Below this many rows one stream is enough; above, two run on two cores.
PARALLEL_MIN = 50_000


async def _copy(
    conn: asyncpg.Connection,
    fmt: str,
    clause: str,
    args: list[Any],
    span: tuple[int, int],
    f: Any,
    header: bool,
) -> None:
    n = len(args)
    rows = _ROWS.format(where=clause, lo=n + 1, hi=n + 2)
    if fmt == "csv":
        options: dict[str, Any] = {"format": "csv", "header": header}
        sql = _CSV_SELECT.replace("{rows}", rows)
    else:
        options = {"format": "csv", "delimiter": "\x1f", "quote": "\x1e"}
        sql = _JSONL_SELECT.replace("{rows}", rows)
    await conn.copy_from_query(sql, *args, *span, output=f, timeout=JOB_TIMEOUT_S, **options)


async def write_export(
    pool: asyncpg.Pool,
    workspace_id: str,
    fmt: str,
    filters: dict[str, str],
    path: Path,
    *,
    max_seq: int | None = None,
    box: SecretBox | None = None,
) -> Written:
    """Write the export to ``path``: one snapshot for the rows and their counts.

    A large export is written by two PostgreSQL sessions sharing one
    snapshot (``pg_export_snapshot``), each a half of the seq range into
    its own file; the halves are then joined. PostgreSQL's parsing of the
    bodies is the cost, and this puts it on two cores. ``max_seq`` leaves
    out later events: files written one after the other then hold the same.
    With ``box``, a file holding sealed fields gets their readable values
    (``personal``) in a second pass.
    """
    where, args, violations = filter_clauses(workspace_id, filters, EXPORT_FILTERS)
    if violations:  # checked by the gateway; a stored job is never like this
        raise ValueError(f"invalid filters: {violations}")
    if max_seq is not None:
        args.append(max_seq)
        where.append(f"seq <= ${len(args)}")
    clause = " WHERE " + " AND ".join(where)
    second = path.with_name(path.name + ".2")
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        counts = await conn.fetchrow(
            "SELECT count(*) AS n, min(seq) AS first, max(seq) AS last, pg_export_snapshot() AS snap"
            " FROM events" + clause,
            *args,
        )
        n, first, last = int(counts["n"]), counts["first"] or 1, counts["last"] or 0
        # Our own two sessions are the parallelism, and JIT compiling this
        # query costs more than it saves. A scan of the whole multi-tenant
        # table is never right for one workspace (the planner, misled by its
        # estimates, picked one and a sort: 4x slower); unfiltered, the
        # primary key is walked in seq order as verify does.
        settings = (
            "SET LOCAL jit = off; SET LOCAL max_parallel_workers_per_gather = 0;"
            " SET LOCAL enable_seqscan = off"
        )
        if not filters:
            settings += "; SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
        await conn.execute(settings)
        # The first half is hashed as PostgreSQL writes it; the second while
        # it is appended: the file is never read back for its digest.
        f1 = HashingWriter(await asyncio.to_thread(open, path, "wb"))
        f2 = await asyncio.to_thread(open, second, "wb")
        try:
            if n < PARALLEL_MIN:
                await _copy(conn, fmt, clause, args, (first, last), f1, True)
            else:
                mid = first + (last - first) // 2
                async with (
                    pool.acquire() as other,
                    other.transaction(readonly=True, isolation="repeatable_read"),
                ):
                    await other.execute(f"SET TRANSACTION SNAPSHOT '{counts['snap']}'")
                    await other.execute(settings)
                    await asyncio.gather(
                        _copy(conn, fmt, clause, args, (first, mid), f1, True),
                        _copy(other, fmt, clause, args, (mid + 1, last), f2, False),
                    )
        finally:
            await asyncio.to_thread(f1.close)
            await asyncio.to_thread(f2.close)
    await asyncio.to_thread(_join, f1, path, second)
    size, digest = f1.size, f1.digest.hexdigest()
    if box is not None and n and await _has_subject_keys(pool, workspace_id):
        size, digest = await _open_personal(pool, box, workspace_id, fmt, path)
    return Written(n, size, digest, counts["first"], counts["last"])


async def _has_subject_keys(pool: asyncpg.Pool, workspace_id: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM subject_keys WHERE workspace_id = $1)", workspace_id
        )
    )


async def _open_personal(
    pool: asyncpg.Pool, box: SecretBox, workspace_id: str, fmt: str, path: Path
) -> tuple[int, str]:
    """Add the ``personal`` column (key) to an export holding sealed fields; (size, sha256).

    One pass finds the subjects' key ids the file holds, one query reads
    their keys (None for erased ones), a second pass rewrites the file with
    each row's readable values. The sealed fields stay as hashed, so the
    file verifies as before.
    """
    wanted = await asyncio.to_thread(_sealed_kids, path)
    keys = await subjects.keys_by_kid(pool, box, workspace_id, wanted)
    return await asyncio.to_thread(_rewrite_personal, path, fmt, workspace_id, keys)


def _sealed_kids(path: Path) -> set[str]:
    found: set[str] = set()
    with open(path, "rb") as f:
        for line in f:
            if sealing.MARK in line:
                found.update(m.decode() for m in sealing.KIDS_IN_BYTES.findall(line))
    return found


def _rewrite_personal(
    path: Path, fmt: str, workspace_id: str, keys: dict[str, bytes | None]
) -> tuple[int, str]:
    out = path.with_name(path.name + ".personal")
    w = HashingWriter(open(out, "wb"))  # noqa: SIM115 (closed below)
    try:
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                text = io.StringIO()
                writer = csv.writer(text, lineterminator="\n")
                header = next(reader)
                writer.writerow([*header, PERSONAL_COLUMN])
                decode = csv_decoder(header)
                for cells in reader:
                    event, _ = decode(cells)
                    shown = personal(event, workspace_id, keys)
                    writer.writerow([*cells, orjson.dumps(shown).decode() if shown else ""])
                    if text.tell() > CHUNK:
                        w.write(text.getvalue().encode())
                        text.seek(0)
                        text.truncate()
                w.write(text.getvalue().encode())
        else:
            with open(path, "rb") as f:
                for line in f:
                    if sealing.MARK in line:
                        shown = personal(orjson.loads(line), workspace_id, keys)
                        if shown:
                            line = b"%s,%s:%s}\n" % (
                                line.rstrip(b"\n")[:-1],
                                orjson.dumps(PERSONAL_COLUMN),
                                orjson.dumps(shown),
                            )
                    w.write(line)
    finally:
        w.close()
    out.replace(path)
    return w.size, w.digest.hexdigest()


def _join(whole: HashingWriter, path: Path, second: Path) -> None:
    """Append ``second`` to ``path`` through ``whole`` (which hashed the first half); remove it."""
    whole.f = open(path, "ab")  # noqa: SIM115 (closed below)
    try:
        with open(second, "rb") as f:
            while chunk := f.read(CHUNK):
                whole.write(chunk)
    finally:
        whole.close()
    second.unlink()


class ExportJobs:
    def __init__(
        self, settings: Settings, log: Logger, storage: Storage, pool: asyncpg.Pool
    ) -> None:
        self.log = log
        self.pool = pool
        self.stopping = asyncio.Event()
        self.box = secretbox.for_settings(settings)
        self.jobs = LeasedJobs("exports", "export", settings, log, storage, pool, self._write)
        self.consumer = kafka.consumer(
            settings,
            settings.topics.export_requests,
            group=settings.topics.group("exporter-jobs"),
        )

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.consumer.start()
        sweeper = asyncio.create_task(self.jobs.sweep_forever(self.stopping))
        try:
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=500, max_records=20)
                for tp, records in batches.items():
                    for r in records:
                        await self._requested(r.value)
                    with contextlib.suppress(CommitFailedError, IllegalStateError):
                        await self.consumer.commit({tp: records[-1].offset + 1})
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await self.consumer.stop()

    async def _requested(self, value: bytes | None) -> None:
        try:
            doc = orjson.loads(value or b"")
            export_id = str(doc["export_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.log.warning("export.bad_request_message")
            return
        await self.jobs.process(export_id)

    async def _write(self, export_id: str, job: asyncpg.Record, workdir: Path) -> Output:
        workspace_id = str(job["workspace_id"])
        fmt = job["format"]
        filters = job["filters"]
        if isinstance(filters, str):
            filters = orjson.loads(filters)
        path = workdir / f"{export_id}.{fmt}"
        written = await write_export(self.pool, workspace_id, fmt, filters, path, box=self.box)
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return Output(path, f"exports/{workspace_id}/{export_id}.{fmt}", media, written)
