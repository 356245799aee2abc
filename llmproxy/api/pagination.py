"""Pagination: pages for the configuration tables, cursors for the logs.

The logs grow to millions of rows: a cursor on created_at reads one index
range per page and never counts the table (an offset or a page count would).
"""

from rest_framework.pagination import CursorPagination, PageNumberPagination


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class LogCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
