"""The usage API: a site's series at raw, hourly and daily resolution; the organization's
daily CSV; who may read them; validation; and queries that do not grow with the data."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from hosting import services
from monitoring import usage
from monitoring.api.serializers import UsagePointSerializer, UsageSeriesSerializer
from monitoring.models import DailyUsage, TrafficSample, UsageSample
from tests.api_mixin import SingletonEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for, token_client
from tests.factories import add_member
from tests.hosting.factories import make_site, the_site

MB = 2**20
T0 = datetime(2025, 3, 10, 10, 0, tzinfo=UTC)


def usage_url(org, slug: str = "web") -> str:
    return f"/api/v1/organizations/{org.slug}/sites/{slug}/usage/"


def csv_url(org) -> str:
    return f"/api/v1/organizations/{org.slug}/usage/daily.csv"


def q(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sample(site, when, *, cpu=10.0, memory_mb=100.0, bandwidth_mb=0.0) -> UsageSample:
    return UsageSample(
        organization_id=site.organization_id,
        site=site,
        docker_id="c0ffee",
        timestamp=when,
        cpu_percent=cpu,
        memory_bytes=int(memory_mb * MB),
        bandwidth_bytes=int(bandwidth_mb * MB),
    )


def daily(site, day: date, **values) -> DailyUsage:
    values.setdefault("samples", 2880)
    return DailyUsage(organization_id=site.organization_id, site=site, date=day, **values)


@pytest.fixture
def site(cast):
    return the_site(cast.org)


@pytest.fixture
def samples(cast, site):
    """Four samples from 10:00 to 11:00 (the first without CPU yet), one just before the range,
    and one of another site at the same time."""
    other = make_site(cast.org, name="Other")
    UsageSample.objects.bulk_create(
        [
            sample(site, T0 - timedelta(seconds=1), cpu=99, memory_mb=999, bandwidth_mb=9),
            sample(site, T0, cpu=None, memory_mb=100, bandwidth_mb=1),
            sample(site, T0 + timedelta(seconds=30), cpu=20, memory_mb=200, bandwidth_mb=2),
            sample(site, T0 + timedelta(minutes=59, seconds=30), cpu=40, memory_mb=300),
            sample(site, T0 + timedelta(hours=1), cpu=10, memory_mb=50, bandwidth_mb=0.5),
            sample(other, T0 + timedelta(seconds=30), cpu=77, memory_mb=777, bandwidth_mb=7),
        ]
    )


def get(client, org, **params):
    return client.get(usage_url(org), params)


# --- values per resolution ----------------------------------------------------------------


@pytest.mark.usefixtures("samples")
def test_raw_series_lists_each_sample_of_the_site_in_the_half_open_range(cast):
    response = get(
        client_for(cast.viewer), cast.org, resolution="raw", **{"from": q(T0)}, to=q(T0 + H(1))
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["site"] == "web"
    assert body["resolution"] == "raw"
    assert body["from"] == "2025-03-10T10:00:00Z"
    assert body["to"] == "2025-03-10T11:00:00Z"
    assert body["series"] == [
        point("2025-03-10T10:00:00Z", None, None, 100, 100, 1, 1),
        point("2025-03-10T10:00:30Z", 20, 20, 200, 200, 2, 1),
        point("2025-03-10T10:59:30Z", 40, 40, 300, 300, 0, 1),
    ]


@pytest.mark.usefixtures("samples")
def test_hourly_series_averages_maxes_and_sums_per_hour(cast):
    response = get(
        client_for(cast.viewer), cast.org, resolution="hour", **{"from": q(T0)}, to=q(T0 + H(2))
    )

    assert response.status_code == 200, response.content
    assert response.json()["series"] == [
        # CPU averages the two readings it has; the first sample has none yet.
        point("2025-03-10T10:00:00Z", 30, 40, 200, 300, 3, 3),
        point("2025-03-10T11:00:00Z", 10, 10, 50, 50, 0.5, 1),
    ]


@pytest.mark.usefixtures("samples")
def test_hourly_series_not_rolled_up_yet_is_one_aggregate_query(cast, site):
    with CaptureQueriesContext(connection) as queries:
        points = usage.series(site, T0 - H(10), T0 + H(10), usage.HOUR)

    assert [p["samples"] for p in points] == [1, 3, 1]
    assert len(queries) == 2  # how far the hourly rollups go (nowhere), then the samples
    assert "GROUP BY" in queries[1]["sql"].upper()


def test_daily_series_comes_from_the_rollups_of_the_days_in_range(cast, site):
    DailyUsage.objects.bulk_create(
        [
            daily(site, date(2025, 3, d), avg_cpu_percent=d, max_cpu_percent=2 * d,
                  avg_memory_mb=10 * d, max_memory_mb=20 * d, total_bandwidth_mb=d / 2)
            for d in (8, 9, 10, 11)
        ]
    )  # fmt: skip
    client = client_for(cast.viewer)

    one_day = get(client, cast.org, resolution="day", **{"from": "2025-03-10"}, to="2025-03-11")
    assert one_day.status_code == 200, one_day.content
    assert one_day.json()["series"] == [point("2025-03-10T00:00:00Z", 10, 20, 100, 200, 5, 2880)]

    # Days that overlap the range count, partly covered ones included.
    partial = get(
        client,
        cast.org,
        resolution="day",
        **{"from": "2025-03-09T12:00:00Z"},
        to="2025-03-11T00:00:01Z",
    )
    assert [p["t"][:10] for p in partial.json()["series"]] == [
        "2025-03-09",
        "2025-03-10",
        "2025-03-11",
    ]


def test_series_of_a_site_without_data_is_empty(cast, site):
    response = get(client_for(cast.viewer), cast.org, resolution="raw")
    assert response.status_code == 200
    assert response.json()["series"] == []


def test_defaults_are_hourly_over_the_last_24_hours(cast, site):
    now = timezone.now()
    UsageSample.objects.bulk_create(
        [sample(site, now - H(1), cpu=5), sample(site, now - H(25), cpu=50)]
    )

    body = get(client_for(cast.viewer), cast.org).json()

    assert body["resolution"] == "hour"
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert abs(end - now) < timedelta(minutes=1)
    assert end - start == H(24)
    assert [p["cpu_percent"] for p in body["series"]] == [5]


def test_daily_default_range_is_30_days(cast, site):
    today = timezone.now().date()
    DailyUsage.objects.bulk_create(
        [daily(site, today - timedelta(days=n)) for n in (1, 29, 31, 45)]
    )

    body = get(client_for(cast.viewer), cast.org, resolution="day").json()

    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert end - start == timedelta(days=30)
    days = [p["t"][:10] for p in body["series"]]
    assert days == [str(today - timedelta(days=n)) for n in (29, 1)]


@pytest.mark.usefixtures("samples")
def test_response_has_the_documented_fields(cast):
    body = get(
        client_for(cast.viewer), cast.org, resolution="raw", **{"from": q(T0)}, to=q(T0 + H(1))
    ).json()

    assert set(body) == set(UsageSeriesSerializer().fields)
    assert set(body["series"][0]) == set(UsagePointSerializer().fields)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2025-13-45"}, "to"),
        ({"resolution": "minute"}, "resolution"),
        ({"from": "2025-03-10T10:00:00Z", "to": "2025-03-10T10:00:00Z"}, "from"),
        ({"from": "2025-03-11T00:00:00Z", "to": "2025-03-10T00:00:00Z"}, "from"),
        ({"resolution": "raw", "from": "2025-03-01", "to": "2025-03-03T00:00:01Z"}, "from"),
        ({"resolution": "hour", "from": "2025-01-01", "to": "2025-02-01T00:00:01Z"}, "from"),
        ({"resolution": "day", "from": "2024-01-01", "to": "2025-01-02"}, "from"),
        # Only `from` given: the range runs to now, far more than raw allows.
        ({"resolution": "raw", "from": "2020-01-01"}, "from"),
    ],
)
def test_bad_parameters_are_400_with_a_message_on_the_field(cast, site, params, field):
    fields = assert_field_errors(client_for(cast.viewer).get(usage_url(cast.org), params))
    assert field in fields, fields


@pytest.mark.parametrize(
    ("resolution", "days"), [("raw", 2), ("hour", 31), ("day", 366)]
)  # fmt: skip
def test_the_longest_range_of_each_resolution_is_accepted(cast, site, resolution, days):
    end = T0
    params = {"resolution": resolution, "from": q(end - timedelta(days=days)), "to": q(end)}
    assert client_for(cast.viewer).get(usage_url(cast.org), params).status_code == 200


def test_range_error_says_how_long_a_range_may_be(cast, site):
    params = {"resolution": "raw", "from": "2025-03-01", "to": "2025-03-05"}
    fields = assert_field_errors(client_for(cast.viewer).get(usage_url(cast.org), params))
    assert "at most 2 days" in fields["from"][0]


# --- who may read ---------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["viewer", "member", "admin", "owner"])
def test_every_role_may_read(cast, site, who):
    assert client_for(getattr(cast, who)).get(usage_url(cast.org)).status_code == 200


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
def test_outsiders_get_404(cast, site, who):
    assert_error(client_for(getattr(cast, who)).get(usage_url(cast.org)), 404, "not_found")


def test_anonymous_gets_401(cast, site):
    assert_error(APIClient().get(usage_url(cast.org)), 401, "not_authenticated")


def test_unknown_and_deleted_sites_are_404(cast, site):
    client = client_for(cast.owner)
    assert_error(client.get(usage_url(cast.org, "nope")), 404, "not_found")
    services.delete_site(site, actor=None)
    assert_error(client.get(usage_url(cast.org)), 404, "not_found")


def test_site_of_another_organization_is_404_under_this_one(cast, site):
    make_site(cast.other_org, name="Secret", slug="secret")
    assert_error(client_for(cast.owner).get(usage_url(cast.org, "secret")), 404, "not_found")


def test_token_limited_to_another_organization_gets_404(cast, site):
    add_member(cast.other_org, cast.owner, Role.VIEWER)
    client = token_client(cast.owner, ("read",), organization=cast.other_org)
    assert_error(client.get(usage_url(cast.org)), 404, "not_found")


def test_token_needs_the_read_scope(cast, site):
    assert token_client(cast.viewer, ("read",)).get(usage_url(cast.org)).status_code == 200
    response = token_client(cast.viewer, ("deploy",)).get(usage_url(cast.org))
    assert_error(response, 403, "permission_denied")


# --- queries --------------------------------------------------------------------------------


def test_raw_query_count_does_not_grow_with_samples(cast, site):
    client = client_for(cast.viewer)
    params = {"resolution": "raw", "from": q(T0), "to": q(T0 + H(24))}

    def count() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(usage_url(cast.org), params)
        assert response.status_code == 200
        return len(queries), len(response.json()["series"])

    UsageSample.objects.bulk_create([sample(site, T0 + timedelta(minutes=n)) for n in range(3)])
    few, points = count()
    UsageSample.objects.bulk_create(
        [sample(site, T0 + H(1) + timedelta(seconds=30 * n)) for n in range(500)]
    )
    many, more_points = count()

    assert (points, more_points) == (3, 503)
    assert few == many, f"{few} queries for 3 samples, {many} for 503"


# --- the organization's daily CSV ---------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


@pytest.fixture
def days(cast, site):
    """Two sites' days (one site deleted since), and a day of the other organization."""
    gone = make_site(cast.org, name="Gone", slug="gone")
    foreign = make_site(cast.other_org, name="Theirs", slug="theirs")
    DailyUsage.objects.bulk_create(
        [
            daily(site, date(2025, 3, 1), avg_memory_mb=100.5, max_memory_mb=200,
                  avg_cpu_percent=12.25, max_cpu_percent=80, total_bandwidth_mb=3.5,
                  uptime_seconds=86400, avg_response_time_ms=41.123456, total_requests=1234),
            daily(site, date(2025, 3, 2), avg_memory_mb=101, max_memory_mb=201,
                  avg_cpu_percent=13, max_cpu_percent=81, total_bandwidth_mb=0,
                  uptime_seconds=3600, avg_response_time_ms=None),
            daily(gone, date(2025, 3, 1), avg_memory_mb=50, max_memory_mb=60,
                  avg_cpu_percent=1, max_cpu_percent=2, total_bandwidth_mb=0.25,
                  uptime_seconds=43200, avg_response_time_ms=9),
            daily(site, date(2025, 2, 28)),
            daily(foreign, date(2025, 3, 1)),
        ]
    )  # fmt: skip
    services.delete_site(gone, actor=None)


@pytest.mark.usefixtures("days")
def test_csv_has_one_row_per_site_and_day_deleted_sites_included(cast):
    response = client_for(cast.viewer).get(
        csv_url(cast.org), {"from": "2025-03-01", "to": "2025-03-02"}
    )

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="acme-usage-2025-03-01-2025-03-02.csv"'
    )
    assert read_csv(response) == [
        list(usage.CSV_COLUMNS),
        ["2025-03-01", "gone", "50.0", "60.0", "1.0", "2.0", "0.25", "43200", "9.0", ""],
        ["2025-03-01", "web", "100.5", "200.0", "12.25", "80.0", "3.5", "86400", "41.123", "1234"],
        ["2025-03-02", "web", "101.0", "201.0", "13.0", "81.0", "0.0", "3600", "", ""],
    ]


@pytest.mark.usefixtures("days")
def test_csv_is_csv_even_when_the_client_asks_for_it_by_accept(cast):
    response = client_for(cast.viewer).get(
        csv_url(cast.org), {"from": "2025-03-01", "to": "2025-03-01"}, HTTP_ACCEPT="text/csv"
    )
    assert len(read_csv(response)) == 3


def test_csv_default_range_is_the_last_30_days(cast, site):
    today = timezone.now().date()
    DailyUsage.objects.bulk_create([daily(site, today - timedelta(days=n)) for n in (0, 29, 30)])

    rows = read_csv(client_for(cast.viewer).get(csv_url(cast.org)))

    assert [r[0] for r in rows[1:]] == [str(today - timedelta(days=29)), str(today)]


def test_csv_of_an_organization_without_usage_is_just_the_header(cast):
    assert read_csv(client_for(cast.viewer).get(csv_url(cast.org))) == [list(usage.CSV_COLUMNS)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "March"}, "from"),
        ({"to": "2025-02-30"}, "to"),
        ({"from": "2025-03-02", "to": "2025-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "from"),  # 367 days
    ],
)
def test_csv_bad_ranges_are_400_json(cast, params, field):
    response = client_for(cast.viewer).get(csv_url(cast.org), params, HTTP_ACCEPT="text/csv")
    assert field in assert_field_errors(response)


def test_csv_allows_366_days(cast):
    params = {"from": "2024-01-01", "to": "2024-12-31"}
    assert client_for(cast.viewer).get(csv_url(cast.org), params).status_code == 200


@pytest.mark.parametrize("who", ["outsider", "other_owner"])
def test_csv_outsiders_get_404(cast, who):
    assert_error(client_for(getattr(cast, who)).get(csv_url(cast.org)), 404, "not_found")


def test_csv_token_limited_to_another_organization_gets_404(cast):
    add_member(cast.other_org, cast.owner, Role.VIEWER)
    client = token_client(cast.owner, ("read",), organization=cast.other_org)
    assert_error(client.get(csv_url(cast.org)), 404, "not_found")


def test_csv_anonymous_gets_401(cast):
    assert_error(APIClient().get(csv_url(cast.org)), 401, "not_authenticated")


# --- helpers --------------------------------------------------------------------------------


def H(hours: float) -> timedelta:
    return timedelta(hours=hours)


def point(t, cpu, cpu_max, memory, memory_max, bandwidth, samples) -> dict:
    as_float = lambda v: None if v is None else float(v)  # noqa: E731
    return {
        "t": t,
        "cpu_percent": as_float(cpu),
        "cpu_percent_max": as_float(cpu_max),
        "memory_mb": as_float(memory),
        "memory_mb_max": as_float(memory_max),
        "bandwidth_mb": as_float(bandwidth),
        "samples": samples,
    }


# --- the generic endpoint tests --------------------------------------------------------------


class TestUsageApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER}
    # session, user, organization (+role), site; the hourly rollups' mark, their rows and the
    # samples after them; requests
    max_read_queries = 8

    def make_site(self, cast):
        return make_site(cast.org, name="Measured")

    def url(self, org, site):
        return usage_url(org, site.slug)


class TestUsageCsvApi(SingletonEndpointMixin):
    min_roles = {"read": Role.VIEWER}
    max_read_queries = 3  # session, user, organization (+role); rows are read as the body streams
    read_content_type = "text/csv"

    def url(self, org, site):
        return csv_url(org)


# --- requests -----------------------------------------------------------------------------


def tick(site, at, requests, ms, p95, s4=0):
    return TrafficSample(
        organization_id=site.organization_id, site=site, timestamp=at, requests=requests,
        status_2xx=requests - s4, status_4xx=s4, bytes_sent=requests * MB // 4,
        response_time_avg_ms=ms, response_time_p95_ms=p95,
    )  # fmt: skip


def test_requests_come_per_tick_hour_and_day(cast, site):
    other = make_site(cast.org, name="Other")
    TrafficSample.objects.bulk_create(
        [
            tick(site, T0, 10, 20.0, 40.0, s4=2),
            tick(site, T0 + timedelta(minutes=30), 30, 40.0, 90.0),
            tick(site, T0 + H(1), 4, 5.0, 6.0),
            tick(site, T0 - timedelta(seconds=1), 99, 1.0, 1.0),  # before the range
            tick(other, T0, 77, 1.0, 1.0),  # another site's
        ]
    )
    DailyUsage.objects.create(
        organization=cast.org, site=site, date=T0.date(), total_requests=44,
        avg_response_time_ms=31.5,
    )  # fmt: skip
    client = client_for(cast.viewer)
    window = {"from": q(T0), "to": q(T0 + H(2))}

    raw = get(client, cast.org, resolution="raw", **window).json()["requests"]
    assert [(p["t"], p["requests"], p["status_4xx"]) for p in raw] == [
        ("2025-03-10T10:00:00Z", 10, 2),
        ("2025-03-10T10:30:00Z", 30, 0),
        ("2025-03-10T11:00:00Z", 4, 0),
    ]
    assert raw[0]["sent_mb"] == 2.5 and raw[0]["response_time_p95_ms"] == 40.0

    hourly = get(client, cast.org, resolution="hour", **window).json()["requests"]
    assert hourly[0] == {
        "t": "2025-03-10T10:00:00Z",
        "requests": 40,
        "status_2xx": 38,
        "status_3xx": 0,
        "status_4xx": 2,
        "status_5xx": 0,
        "sent_mb": 10.0,
        "response_time_ms": 35.0,  # weighted by requests: (10*20 + 30*40) / 40
        "response_time_p95_ms": 90.0,
    }
    daily = get(client, cast.org, resolution="day", **window).json()["requests"]
    assert [(p["t"], p["requests"], p["response_time_ms"]) for p in daily] == [
        ("2025-03-10T00:00:00Z", 44, 31.5)
    ]
