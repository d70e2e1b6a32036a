from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class TimestampCursorPagination(pagination.CursorPagination):
    """Stable pages over an append-only, time-ordered table (audit logs)."""

    ordering = "-timestamp"
    page_size_query_param = "page_size"
    max_page_size = 500
