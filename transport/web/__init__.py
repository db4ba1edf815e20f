"""The canvas web page: ``GET /`` and its static files (``transport.web.page``).

The page and the standalone JavaScript client of protocol v1 live in ``static/``;
nothing is built or fetched at run time. See ``docs/web.md``.
"""
