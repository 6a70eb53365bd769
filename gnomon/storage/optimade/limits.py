"""Bounds on what one request may ask of ``gnomon serve``.

A server on a shared machine must not let one request tie it up: pages are capped (a larger
``page_limit`` gets OPTIMADE's 403 error document, as the specification's reference server
answers), the filter's length, nesting and number of comparisons are capped (400), a request
whose URL or body is larger than :data:`MAX_REQUEST_BYTES` is refused before anything parses
it (:class:`gnomon.serve.limits.RequestSizeLimit`), and a query that runs longer than
:data:`QUERY_TIME_LIMIT_S` is stopped (503). The numbers live here, below both the views
that check filters and the web app that checks requests.
"""

from __future__ import annotations

DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 1000
#: page_offset (or page_number times page_limit) beyond this is refused: both backends keep
#: offsets as 64-bit integers, and no database gnomon serves has a billion structures
MAX_PAGE_OFFSET = 1_000_000_000
MAX_FILTER_CHARS = 4000
#: levels of parentheses in a filter (200 overflowed the parser's stack)
MAX_FILTER_DEPTH = 20
#: comparisons (``nsites>2``, ``elements HAS "Li"``, ...) in one filter
MAX_FILTER_COMPARISONS = 100
MAX_REQUEST_BYTES = 16_384
#: seconds one request's database work may take before it is stopped
QUERY_TIME_LIMIT_S = 10.0
