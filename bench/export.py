"""Export 1M: the exporter's own ``write_export`` over the verify fixture's chain.

Times a CSV and a JSON Lines export of the whole 1M-event chain, written
to a scratch file exactly as an export job writes it (PostgreSQL ``COPY``
for CSV, a server-side cursor for JSON Lines), then the offline check an
auditor runs (``chainlog verify-export``'s engine) on the CSV.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from libs.common.exportverify import verify_export
from services.exporter.exports import write_export

EXPORT_TARGET_S = 10.0


async def time_export(pool: asyncpg.Pool, workspace_id: str, expected: int) -> dict[str, Any]:
    out: dict[str, Any] = {"events": expected, "target_s": EXPORT_TARGET_S}
    with tempfile.TemporaryDirectory(prefix="chainlog-bench-export-") as tmp:
        for fmt in ("csv", "jsonl"):
            path = Path(tmp) / f"export.{fmt}"
            t0 = time.perf_counter()
            written = await write_export(pool, workspace_id, fmt, {}, path)
            seconds = time.perf_counter() - t0
            out[fmt] = {
                "seconds": seconds,
                "rows": written.rows,
                "bytes": written.size,
                "events_per_s": written.rows / seconds,
                "ok": written.rows == expected,
            }
            if fmt == "csv":
                t0 = time.perf_counter()
                result = verify_export([path])
                out["verify_csv"] = {
                    "seconds": time.perf_counter() - t0,
                    "valid": result.valid,
                    "rows": result.rows_checked,
                }
    out["met"] = out["csv"]["seconds"] < EXPORT_TARGET_S and out["csv"]["ok"]
    return out
