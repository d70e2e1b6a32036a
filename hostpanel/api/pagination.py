from django.core.paginator import Paginator
from rest_framework import pagination


class FirstPageCountingPaginator(Paginator):
    """Django's paginator without the COUNT query when everything fits on the first page:
    the first page is fetched with one row more than it shows, and when that row is not
    there the rows fetched are the count. Otherwise the count is asked for as Django does
    (still two queries); later pages are Django's."""

    def page(self, number):
        if str(number) != "1" or self.orphans or not self.allow_empty_first_page:
            return super().page(number)
        rows = list(self.object_list[: self.per_page + 1])
        if len(rows) <= self.per_page:
            self.__dict__["count"] = len(rows)  # the cached_property Django would compute
        return self._get_page(rows[: self.per_page], 1, self)


class PageNumberPagination(pagination.PageNumberPagination):
    django_paginator_class = FirstPageCountingPaginator
    page_size_query_param = "page_size"
    max_page_size = 500


class TimestampCursorPagination(pagination.CursorPagination):
    """Stable pages over an append-only, time-ordered table (audit logs)."""

    ordering = "-timestamp"
    page_size_query_param = "page_size"
    max_page_size = 500
