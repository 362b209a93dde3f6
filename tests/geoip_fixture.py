"""A small, deterministic GeoIP2 database for tests, written with mmdb-writer.

Byte for byte the same on every run: the networks are inserted in a fixed
order and the build epoch is fixed. IPv4 networks live at ``::/96`` of the
IPv6 tree, where MaxMind readers look an IPv4 address up; ``::ffff:a.b.c.d``
is not aliased, so a mapped address is found only after unmapping it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

#: 2026-01-01T00:00:00Z.
BUILD_EPOCH = 1_767_225_600

Geo = tuple[str | None, str | None]

_CONTINENTS = {
    "BR": ("SA", "South America"),
    "CN": ("AS", "Asia"),
    "DE": ("EU", "Europe"),
    "FR": ("EU", "Europe"),
    "GB": ("EU", "Europe"),
    "SE": ("EU", "Europe"),
    "US": ("NA", "North America"),
}
_COUNTRY_NAMES = {
    "BR": "Brazil",
    "CN": "China",
    "DE": "Germany",
    "FR": "France",
    "GB": "United Kingdom",
    "SE": "Sweden",
    "US": "United States",
}

# (network, country, registered country, city, sample address in the network)
_NETWORKS: tuple[tuple[str, str | None, str, str | None, str], ...] = (
    ("81.2.69.0/24", "GB", "GB", "London", "81.2.69.160"),
    ("175.16.199.0/24", "CN", "CN", "Changchun", "175.16.199.37"),
    ("128.101.101.0/24", "US", "US", "Minneapolis", "128.101.101.101"),
    ("90.84.0.0/16", "FR", "FR", "Paris", "90.84.200.7"),
    ("2a02:ff0::/32", "DE", "DE", "Berlin", "2a02:ff0:1::1"),
    ("2804:14c::/32", "BR", "BR", "São Paulo", "2804:14c:65::2"),
    # A country without a city.
    ("89.160.20.0/24", "SE", "SE", None, "89.160.20.112"),
    # No located country: the registered one stands in.
    ("9.9.9.0/24", None, "US", None, "9.9.9.9"),
)

#: Public addresses in no network of the database.
UNKNOWN = ("1.1.1.1", "2606:4700:4700::1111")

#: Networks no public database holds, each with an address in it. They are
#: in this one, with a country, so that a test tells an address a reader
#: refused to look up from one that was looked up and not found.
NOT_PUBLIC = (
    # In the IPv4 tree, at ::/104: it holds :: and ::1 as well.
    ("0.0.0.0/8", "0.0.0.0"),
    ("10.0.0.0/8", "10.1.2.3"),
    ("172.16.0.0/12", "172.16.5.4"),
    ("192.168.0.0/16", "192.168.1.1"),
    ("127.0.0.0/8", "127.0.0.1"),
    ("169.254.0.0/16", "169.254.10.20"),
    ("224.0.0.0/4", "224.0.0.251"),
    ("240.0.0.0/4", "255.255.255.255"),
    ("fc00::/7", "fd12:3456::1"),
    ("fe80::/10", "fe80::1"),
    ("ff00::/8", "ff02::1"),
    ("2001:db8::/32", "2001:db8::1"),
)
_NOT_PUBLIC_RECORD = {
    "country": {"iso_code": "ZZ", "names": {"en": "Not public"}},
    "city": {"names": {"en": "Not public"}},
}


class _FixedEpochWriter(MMDBWriter):
    def _build_meta(self) -> dict[str, Any]:
        return super()._build_meta() | {"build_epoch": BUILD_EPOCH}


def _country(code: str) -> dict[str, Any]:
    return {"iso_code": code, "names": {"en": _COUNTRY_NAMES[code]}}


def _record(country: str | None, registered: str, city: str | None) -> dict[str, Any]:
    located = country or registered
    continent_code, continent_name = _CONTINENTS[located]
    record: dict[str, Any] = {
        "continent": {"code": continent_code, "names": {"en": continent_name}},
        "registered_country": _country(registered),
    }
    if country is not None:
        record["country"] = _country(country)
    if city is not None:
        record["city"] = {"names": {"en": city}}
    return record


def write_test_database(path: Path, *, database_type: str = "GeoIP2-City") -> dict[str, Geo]:
    """Write the database to ``path``; return sample address -> (country, city).

    ``database_type="GeoIP2-Country"`` writes the same networks without cities,
    as a Country database has none. The mapping also holds a mapped IPv4
    address, and with (None, None): public addresses in no network and the
    addresses of ``NOT_PUBLIC``, which are in the database but MUST NOT be
    looked up.
    """
    with_cities = "City" in database_type
    writer = _FixedEpochWriter(
        ip_version=6,
        database_type=database_type,
        languages=["en"],
        description={"en": "Chainlog test database"},
        ipv4_compatible=True,
    )
    expected: dict[str, Geo] = {}
    for network, country, registered, city, sample in _NETWORKS:
        kept_city = city if with_cities else None
        writer.insert_network(IPSet([network]), _record(country, registered, kept_city))
        expected[sample] = (country or registered, kept_city)
    for network, sample in NOT_PUBLIC:
        writer.insert_network(IPSet([network]), _NOT_PUBLIC_RECORD)
        expected[sample] = (None, None)
    expected["::ffff:81.2.69.160"] = expected["81.2.69.160"]
    expected["::ffff:10.1.2.3"] = (None, None)
    for address in UNKNOWN:
        expected[address] = (None, None)
    writer.to_db_file(str(path))
    return expected
