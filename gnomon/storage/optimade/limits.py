"""Bounds on what one request may ask of ``gnomon serve``.

A server on a shared machine must not let one request tie it up: pages are capped (a larger
``page_limit`` gets OPTIMADE's 403 error document, as the specification's reference server
answers), the filter's length is capped, and a request whose URL or body is larger than
:data:`MAX_REQUEST_BYTES` is refused before anything parses it
(:class:`gnomon.serve.limits.RequestSizeLimit`). The numbers live here, below both the views
that check filters and the web app that checks requests.
"""

from __future__ import annotations

DEFAULT_PAGE_LIMIT = 20
MAX_PAGE_LIMIT = 1000
MAX_FILTER_CHARS = 4000
MAX_REQUEST_BYTES = 16_384
