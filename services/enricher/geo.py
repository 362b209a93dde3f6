"""Country and city of an IP address from a MaxMind DB: pure, no Kafka, no SQL.

The database is opened with ``geoip2.database.Reader`` in ``MODE_AUTO``: the
C extension over a memory map (``MODE_MMAP_EXT``) when it is installed, pure
Python otherwise. ``MODE_MMAP`` would force the pure-Python reader, 4 to 9
times slower (table below). A mapped file MUST NOT be rewritten in place
(the process could die of SIGBUS); ``geoipupdate`` and ``cp`` to a new name
followed by ``mv`` replace it by rename, which a running ``Locator`` never
sees: it keeps the file it opened until it is closed.

Lookups read the record dict from the maxminddb reader that geoip2 holds
instead of asking ``Reader.city()``, which decodes the same dict and then
wraps every section in model objects. Bundled GeoLite2-City (2018-07-03),
100,000 distinct random public IPv4 addresses (99% found), Python 3.11, the
2-core EPYC of docs/benchmarks.md; median of 5 runs, range in brackets:

=============================================  ===========  ==================
path                                           lookups/s    µs per lookup
=============================================  ===========  ==================
``lookup``, uncached, record dict (this one)   26,000       38 (29-39)
``lookup``, uncached, ``Reader.city()`` model  16,000       62 (47-77)
``lookup``, cached                             1,800,000    0.55 (0.36-0.61)
of which: maxminddb ``get`` alone (C)          58,000       17 (16-21)
of which: ``ipaddress`` parse + public checks  68,000       15 (11-19)
``Reader.city()`` model under ``MODE_MMAP``    5,400        185 (one run)
=============================================  ===========  ==================
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self

import geoip2.database
import maxminddb

from libs.common.enrichment import NO_GEO, Geo

BUNDLED_PACKAGE = "_maxminddb_geolite2"
BUNDLED_FILE = "GeoLite2-City.mmdb"

#: The longest textual address worth parsing: a full IPv6 address with an
#: embedded IPv4 (``ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255``).
MAX_ADDRESS_LENGTH = 45


class UnsupportedDatabase(ValueError):
    """The file is a MaxMind DB but holds neither countries nor cities (e.g. ASN)."""


def bundled_database_path() -> Path:
    """The GeoLite2-City.mmdb shipped by maxminddb-geolite2; the file is not opened.

    Raises FileNotFoundError when the package or its file is missing.
    """
    try:
        package = resources.files(BUNDLED_PACKAGE)
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"package {BUNDLED_PACKAGE} (maxminddb-geolite2) is not installed: "
            "install it or set CHAINLOG_GEOIP_DATABASE"
        ) from None
    path = Path(str(package / BUNDLED_FILE))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from maxminddb-geolite2: reinstall it or set CHAINLOG_GEOIP_DATABASE"
        )
    return path


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_multicast
        or addr.is_unspecified
    )


class Locator:
    """Country (ISO code) and English city name of an address, with an LRU cache.

    ``lookup`` MUST NOT raise: an address that is absent, malformed, not public,
    not in the database, or whose lookup fails gives ``NO_GEO``. Failed
    lookups are counted in ``errors`` and never cached, so a bad record does
    not hide behind a cache hit.

    Only syntactically valid addresses enter the cache, so the memory of a full
    cache is bounded by ``cache_size`` entries of at most 45 characters.

    A Locator MUST be used from one thread: the cache is not locked.
    """

    def __init__(self, reader: geoip2.database.Reader, cache_size: int = 65536) -> None:
        metadata = reader.metadata()
        kind = metadata.database_type
        has_city = "City" in kind or "Enterprise" in kind
        if cache_size < 0:
            reader.close()
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if not has_city and "Country" not in kind:
            reader.close()
            raise UnsupportedDatabase(f"a {kind} database has no countries")
        self._reader = reader
        # geoip2 5.3 keeps its maxminddb reader here; reading the record dict
        # skips the model objects (see the table above). A geoip2 that moves
        # it fails here, at start, not on the first event.
        self._db: maxminddb.Reader = reader._db_reader
        self._has_city = has_city
        self._ipv4_only = metadata.ip_version == 4
        self.database_type: str = kind
        self.build_date: date = datetime.fromtimestamp(metadata.build_epoch, UTC).date()
        self._cache: OrderedDict[str, Geo] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @classmethod
    def open(cls, path: Path | None, cache_size: int = 65536) -> Self:
        """Open ``path``, or the bundled GeoLite2-City when None.

        Raises FileNotFoundError, maxminddb.InvalidDatabaseError for a file
        that is not a MaxMind DB, and UnsupportedDatabase for one without
        countries.
        """
        db_path = bundled_database_path() if path is None else path
        reader = geoip2.database.Reader(str(db_path), mode=geoip2.database.MODE_AUTO)
        return cls(reader, cache_size)

    def database_description(self) -> str:
        """Type and build date, e.g. ``GeoLite2-City 2018-07-03``, for the startup log."""
        return f"{self.database_type} {self.build_date.isoformat()}"

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def lookup(self, ip: str | None) -> Geo:
        """(ISO country code, English city name) of ``ip``; ``NO_GEO`` when unknown."""
        if not ip or len(ip) > MAX_ADDRESS_LENGTH:
            return NO_GEO
        cached = self._cache.get(ip)
        if cached is not None:
            self.hits += 1
            self._cache.move_to_end(ip)
            return cached
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return NO_GEO
        self.misses += 1
        try:
            geo = self._locate(ip, addr)
        except Exception:
            self.errors += 1
            return NO_GEO
        if self._cache_size:
            self._cache[ip] = geo
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return geo

    def _locate(self, text: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Geo:
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.scope_id is not None:
                return NO_GEO
            mapped = addr.ipv4_mapped
            if mapped is not None:
                # A database built without MaxMind's ::ffff:0:0/96 alias knows
                # a mapped address only in its IPv4 tree.
                addr, text = mapped, str(mapped)
        if not _is_public(addr):
            return NO_GEO
        if self._ipv4_only and addr.version == 6:
            return NO_GEO
        # The C reader parses text faster than it converts an ipaddress object.
        record = self._db.get(text)
        if not isinstance(record, dict):
            return NO_GEO
        country = _iso_code(record.get("country")) or _iso_code(record.get("registered_country"))
        city = _english_name(record.get("city")) if self._has_city else None
        return (country, city)

    def close(self) -> None:
        self._cache.clear()
        self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _iso_code(section: object) -> str | None:
    if isinstance(section, dict):
        code = section.get("iso_code")
        if isinstance(code, str):
            return code
    return None


def _english_name(section: object) -> str | None:
    if isinstance(section, dict):
        names = section.get("names")
        if isinstance(names, dict):
            name = names.get("en")
            if isinstance(name, str):
                return name
    return None
