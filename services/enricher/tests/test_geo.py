"""The enricher's GeoIP lookup against a database built for the test, and the bundled one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import geoip2.database
import maxminddb
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

from libs.common.enrichment import NO_GEO, Geo
from services.enricher.geo import (
    Locator,
    UnsupportedDatabase,
    bundled_database_path,
)
from tests.geoip_fixture import BUILD_EPOCH, NOT_PUBLIC, write_test_database


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Geo]]:
    path = tmp_path_factory.mktemp("geo") / "city.mmdb"
    return path, write_test_database(path)


@pytest.fixture
def locator(city_db: tuple[Path, dict[str, Geo]]) -> Iterator[Locator]:
    with Locator.open(city_db[0]) as loc:
        yield loc


def test_fixture_is_read_by_the_geoip2_city_model(city_db: tuple[Path, dict[str, Geo]]) -> None:
    path, expected = city_db
    with geoip2.database.Reader(str(path)) as reader:
        city = reader.city("81.2.69.160")
        assert (city.country.iso_code, city.city.name, city.continent.code) == (
            "GB",
            "London",
            "EU",
        )
        assert reader.city("2804:14c:65::2").city.names["en"] == "São Paulo"
        assert reader.metadata().build_epoch == BUILD_EPOCH
    assert expected["2804:14c:65::2"] == ("BR", "São Paulo")


def test_fixture_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a.mmdb", tmp_path / "b.mmdb"
    assert write_test_database(first) == write_test_database(second)
    assert first.read_bytes() == second.read_bytes()


def test_every_sample_of_the_fixture(
    locator: Locator, city_db: tuple[Path, dict[str, Geo]]
) -> None:
    expected = city_db[1]
    assert {ip: locator.lookup(ip) for ip in expected} == expected
    assert {country for country, _ in expected.values()} >= {"GB", "DE", "FR", "BR", "US"}


@pytest.mark.parametrize(
    ("ip", "geo"),
    [
        ("81.2.69.160", ("GB", "London")),
        ("175.16.199.37", ("CN", "Changchun")),
        ("2a02:ff0:1::1", ("DE", "Berlin")),
        ("2804:14c:65::2", ("BR", "São Paulo")),
        ("::ffff:81.2.69.160", ("GB", "London")),
        ("::ffff:5102:45a0", ("GB", "London")),
        ("89.160.20.112", ("SE", None)),
        ("9.9.9.9", ("US", None)),
        ("1.1.1.1", NO_GEO),
        ("2606:4700:4700::1111", NO_GEO),
    ],
)
def test_lookup(locator: Locator, ip: str, geo: Geo) -> None:
    assert locator.lookup(ip) == geo
    assert locator.errors == 0


@pytest.mark.parametrize(
    "ip",
    [sample for _, sample in NOT_PUBLIC]
    + ["::ffff:10.1.2.3", "::ffff:127.0.0.1", "::1", "::", "0.1.2.3", "fe80::1%eth0"]
    # A zone names a link of this host: not an address to place on a map.
    + ["2a02:ff0:1::1%eth0"],
)
def test_addresses_that_are_not_public_are_not_looked_up(locator: Locator, ip: str) -> None:
    # The fixture holds all these networks, so only the check keeps them out.
    assert locator.lookup(ip) == NO_GEO
    assert locator.errors == 0


@pytest.mark.parametrize(
    "ip",
    [
        None,
        "",
        "not an address",
        "999.1.1.1",
        "81.2.69",
        "081.2.69.160",
        " 81.2.69.160",
        "81.2.69.160\x00",
        "81.2.69.0/24",
        "[2a02:ff0:1::1]",
        "2a02:ff0:1::1::2",
        "8" * 100_000,
    ],
)
def test_garbage_is_unknown_and_not_cached(locator: Locator, ip: str | None) -> None:
    assert locator.lookup(ip) == NO_GEO
    assert (locator.errors, locator.cache_len) == (0, 0)


def test_a_failed_lookup_is_counted_and_not_cached(city_db: tuple[Path, dict[str, Geo]]) -> None:
    loc = Locator.open(city_db[0])
    loc.close()  # a closed reader fails every lookup
    assert loc.lookup("81.2.69.160") == NO_GEO
    assert loc.lookup("81.2.69.160") == NO_GEO
    assert (loc.errors, loc.misses, loc.hits, loc.cache_len) == (2, 2, 0, 0)


def test_cache_counts_hits_and_misses(locator: Locator) -> None:
    assert locator.lookup("81.2.69.160") == ("GB", "London")
    assert locator.lookup("81.2.69.160") == ("GB", "London")
    assert locator.lookup("10.1.2.3") == NO_GEO
    assert locator.lookup("10.1.2.3") == NO_GEO
    assert (locator.hits, locator.misses) == (2, 2)


def test_cache_is_bounded_and_evicts_the_least_recently_used(
    city_db: tuple[Path, dict[str, Geo]],
) -> None:
    london, berlin, paris = "81.2.69.160", "2a02:ff0:1::1", "90.84.200.7"
    with Locator.open(city_db[0], cache_size=2) as loc:
        loc.lookup(london)
        loc.lookup(berlin)
        loc.lookup(london)  # London is now the most recently used
        loc.lookup(paris)  # evicts Berlin
        assert loc.cache_len == 2
        assert (loc.hits, loc.misses) == (1, 3)
        assert loc.lookup(london) == ("GB", "London")
        assert (loc.hits, loc.misses) == (2, 3)
        assert loc.lookup(berlin) == ("DE", "Berlin")
        assert (loc.hits, loc.misses) == (2, 4)
        assert loc.cache_len == 2


def test_cache_size_zero_caches_nothing(city_db: tuple[Path, dict[str, Geo]]) -> None:
    with Locator.open(city_db[0], cache_size=0) as loc:
        assert loc.lookup("81.2.69.160") == loc.lookup("81.2.69.160") == ("GB", "London")
        assert (loc.hits, loc.misses, loc.cache_len) == (0, 2, 0)


def test_negative_cache_size_is_refused(city_db: tuple[Path, dict[str, Geo]]) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Locator.open(city_db[0], cache_size=-1)


def test_database_description(locator: Locator) -> None:
    assert locator.database_type == "GeoIP2-City"
    assert locator.build_date == date(2026, 1, 1)
    assert locator.database_description() == "GeoIP2-City 2026-01-01"


def test_country_database_has_no_cities(tmp_path: Path) -> None:
    path = tmp_path / "country.mmdb"
    expected = write_test_database(path, database_type="GeoIP2-Country")
    with geoip2.database.Reader(str(path)) as reader:
        assert reader.country("2a02:ff0:1::1").country.iso_code == "DE"
    with Locator.open(path) as loc:
        assert loc.database_type == "GeoIP2-Country"
        assert loc.lookup("2a02:ff0:1::1") == ("DE", None)
        assert loc.lookup("81.2.69.160") == ("GB", None)
        assert {ip: loc.lookup(ip) for ip in expected} == expected
        assert loc.errors == 0


def test_ipv4_only_database_gives_nothing_for_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "v4.mmdb"
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    writer.to_db_file(str(path))
    with Locator.open(path) as loc:
        assert loc.lookup("81.2.69.160") == ("GB", None)
        assert loc.lookup("2a02:ff0:1::1") == NO_GEO
        assert loc.errors == 0


def test_database_without_countries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "asn.mmdb"
    write_test_database(path, database_type="GeoLite2-ASN")
    with pytest.raises(UnsupportedDatabase, match="GeoLite2-ASN"):
        Locator.open(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.mmdb"
    path.write_bytes(b"not a MaxMind DB" * 100)
    with pytest.raises(maxminddb.InvalidDatabaseError):
        Locator.open(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Locator.open(tmp_path / "absent.mmdb")


def test_bundled_database() -> None:
    path = bundled_database_path()
    assert path.name == "GeoLite2-City.mmdb"
    with Locator.open(None) as loc:
        assert loc.database_description() == "GeoLite2-City 2018-07-03"
        # The 2018 GeoLite2 places Google's resolver in the US, without a city.
        assert loc.lookup("8.8.8.8") == ("US", None)
        assert loc.lookup("2001:4860:4860::8888") == ("US", "Mountain View")
        assert loc.lookup("128.101.101.101") == ("US", "Minneapolis")
        assert loc.lookup("192.168.1.1") == NO_GEO
