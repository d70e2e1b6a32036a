"""The first page counts itself when it holds every row; other pages count as Django does."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from hostpanel.api.pagination import FirstPageCountingPaginator
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def page(number, per_page, **kwargs):
    paginator = FirstPageCountingPaginator(User.objects.order_by("email"), per_page, **kwargs)
    with CaptureQueriesContext(connection) as queries:
        shown = paginator.page(number)
        facts = (list(shown), paginator.count, paginator.num_pages, shown.has_next())
    return facts, [q["sql"] for q in queries.captured_queries]


@pytest.fixture
def five_users():
    return sorted(make_user().email for _ in range(5))


@pytest.mark.parametrize("number", [1, "1"])
def test_a_first_page_holding_everything_needs_no_count(five_users, number):
    (rows, count, pages, has_next), sql = page(number, per_page=5)
    assert [u.email for u in rows] == five_users
    assert (count, pages, has_next) == (5, 1, False)
    assert len(sql) == 1 and "COUNT" not in sql[0]


def test_a_full_first_page_still_counts_once(five_users):
    (rows, count, pages, has_next), sql = page(1, per_page=2)
    assert [u.email for u in rows] == five_users[:2]
    assert (count, pages, has_next) == (5, 3, True)
    assert len(sql) == 2 and sum("COUNT" in s for s in sql) == 1


def test_later_pages_and_orphans_are_djangos(five_users):
    (rows, count, pages, has_next), sql = page(3, per_page=2)
    assert ([u.email for u in rows], count, pages, has_next) == (five_users[4:], 5, 3, False)
    assert sum("COUNT" in s for s in sql) == 1
    (rows, count, pages, _), sql = page(1, per_page=4, orphans=1)
    assert (len(rows), count, pages) == (5, 5, 1)
    assert sum("COUNT" in s for s in sql) == 1


def test_an_empty_table_is_one_empty_page():
    User.objects.all().delete()
    (rows, count, pages, has_next), sql = page(1, per_page=5)
    assert (rows, count, pages, has_next) == ([], 0, 1, False)
    assert len(sql) == 1
