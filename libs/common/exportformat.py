"""The export and archive file formats: which columns, how a cell is written, how it reads back.

This module is the contract between the exporter (which writes files) and
every verifier (``chainlog verify-export`` and the standalone script of
``docs/exports.md``): given a row, the hashed event is rebuilt exactly and
its SHA-256 compared with the row's ``hash``.

**CSV** (RFC 4180, UTF-8, one header row; PostgreSQL writes `\n` line ends, a reader takes both). One column per
event field in ``CSV_COLUMNS`` order. A cell is empty when the field is
absent (no event field may be the empty string, so empty means absent).
``seq`` and ``version`` are integers; ``targets``, ``metadata`` are JSON;
every other event field is a string. A string cell whose value starts with
one of ``= + - @``, a tab, a carriage return or ``'`` is written with one
extra ``'`` in front, so a spreadsheet shows it as text instead of running
it as a formula (OWASP's advice); a reader drops exactly one leading ``'``
from a string cell to get the hashed value back. ``hash``, ``ip_country``
and ``ip_city`` follow the event fields: the hash is what is checked, the
geolocation is derived later and not hashed.

**JSON Lines** (``jsonl``; archives are the same, gzipped): one served event
per line, the hashed fields plus ``hash``, ``ip_country`` and ``ip_city``;
the hashed event is the line without those three.

An export holding sealed personal fields (docs/privacy.md) has one more
column, ``personal`` (JSON), after ``ip_city``, and a JSON Lines record one
more key: each sealed field's readable value or ``[erased]``. It is not
hashed; the sealed fields themselves are written as hashed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

#: The hashed event fields, in the order of the CSV columns.
EVENT_COLUMNS = (
    "seq",
    "id",
    "workspace_id",
    "received_at",
    "occurred_at",
    "action",
    "action_category",
    "actor_id",
    "actor_name",
    "actor_type",
    "resource",
    "resource_id",
    "resource_name",
    "targets",
    "metadata",
    "tenant_id",
    "session_id",
    "ip_address",
    "user_agent",
    "idempotency_key",
    "version",
    "schema_violation",
    "prev_hash",
)
#: Served next to the event, not hashed (``hash`` is the event's SHA-256).
DERIVED_COLUMNS = ("hash", "ip_country", "ip_city")
CSV_COLUMNS = EVENT_COLUMNS + DERIVED_COLUMNS
#: The last column (CSV) or key (JSON Lines) of a file holding sealed fields:
#: their readable values, or ``[erased]`` (docs/privacy.md). Not hashed.
PERSONAL_COLUMN = "personal"
#: Every key served next to a hashed event and not part of it.
NOT_HASHED = (*DERIVED_COLUMNS, PERSONAL_COLUMN)

INTEGER_COLUMNS = frozenset({"seq", "version"})
JSON_COLUMNS = frozenset({"targets", "metadata"})
#: A string cell starting with one of these gets a leading ``'``.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


class RowError(ValueError):
    """A row that cannot be read back into an event (names the column)."""


def neutralise(value: str) -> str:
    """A string as written in a CSV cell: safe to open in a spreadsheet."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def csv_cells(event: Mapping[str, Any]) -> list[str]:
    """A served event as the cells of a CSV row under ``CSV_COLUMNS`` (what COPY writes)."""
    cells = []
    for name in CSV_COLUMNS:
        value = event.get(name)
        if value is None:
            cells.append("")
        elif name in JSON_COLUMNS:
            cells.append(orjson.dumps(value).decode())
        elif name in INTEGER_COLUMNS:
            cells.append(str(value))
        else:
            cells.append(neutralise(str(value)))
    return cells


def restore(cell: str) -> str:
    """The hashed string behind a CSV string cell (the inverse of ``neutralise``)."""
    return cell[1:] if cell.startswith("'") else cell


def csv_decoder(header: Sequence[str]) -> Callable[[Sequence[str]], tuple[dict[str, Any], str]]:
    """``event_from_csv`` for rows read as lists of cells (``csv.reader``) under ``header``.

    The same rules, with each column's place worked out once per file: a
    verifier reads millions of rows. Raises ``RowError`` for a header that
    lacks an event column or names one twice; the decoder raises it for a
    row whose cells do not match the header or do not read back.
    """
    place: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in place:
            raise RowError(f"column {name} appears twice")
        place[name] = i
    for name in EVENT_COLUMNS:
        if name not in place:
            raise RowError(f"column {name} is missing")
    strings = [(n, place[n]) for n in EVENT_COLUMNS if n not in INTEGER_COLUMNS | JSON_COLUMNS]
    integers = [(n, place[n]) for n in EVENT_COLUMNS if n in INTEGER_COLUMNS]
    documents = [(n, place[n]) for n in EVENT_COLUMNS if n in JSON_COLUMNS]
    at_hash = place.get("hash")
    width = len(header)

    def decode(cells: Sequence[str]) -> tuple[dict[str, Any], str]:
        if len(cells) != width:
            raise RowError(f"the row has {len(cells)} cells, the header {width}")
        # restore(), inlined: this runs for every cell of every row
        event: dict[str, Any] = {
            n: c[1:] if c[0] == "'" else c for n, i in strings if (c := cells[i])
        }
        for name, i in integers:
            if cell := cells[i]:
                try:
                    event[name] = int(cell)
                except ValueError:
                    raise RowError(f"{name} is not an integer") from None
        for name, i in documents:
            if cell := cells[i]:
                try:
                    event[name] = orjson.loads(cell)
                except orjson.JSONDecodeError:
                    raise RowError(f"{name} is not JSON") from None
        return event, cells[at_hash] if at_hash is not None else ""

    return decode


_decode_by_name = csv_decoder(CSV_COLUMNS)


def event_from_csv(row: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The hashed event and the claimed hash of one CSV row (a ``csv.DictReader`` row)."""
    cells = []
    for name in EVENT_COLUMNS:
        cell = row.get(name)
        if cell is None:
            raise RowError(f"column {name} is missing")
        cells.append(cell)
    return _decode_by_name([*cells, row.get("hash") or "", "", ""])


def event_from_line(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The hashed event and the claimed hash of one JSON Lines record."""
    event = doc.copy()  # and pop: far faster than a comprehension over every key
    for name in NOT_HASHED:
        event.pop(name, None)
    claimed = doc.get("hash")
    return event, claimed if isinstance(claimed, str) else ""


def jsonl_line(body: bytes, digest: bytes, country: str | None, city: str | None) -> bytes:
    """One JSON Lines record from a stored row: the hashed body with the derived fields appended.

    The body is a canonical JSON object (it ends with ``}``), so appending
    keeps it one valid object; no parsing needed.
    """
    return b'%s,"hash":"%s","ip_country":%s,"ip_city":%s}\n' % (
        body[:-1],
        digest.hex().encode(),
        _json_str(country),
        _json_str(city),
    )


def _json_str(value: str | None) -> bytes:
    return b"null" if value is None else json.dumps(value, ensure_ascii=False).encode()
