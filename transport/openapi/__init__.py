"""The OpenAPI 3.1 document for ``/api/v1``, built from the same models the routes use.

Each operation is declared once (``_operations``), with the models of what it takes
and answers (``_answers``); the statuses every route of a kind answers are derived
from the route itself when the document is built (``_document``). Tests check that
the document and the router list the same routes, that every ``$ref`` resolves, that
every example validates, and (schemathesis, against a running server) that the
answers keep to it.
"""

from transport.openapi._document import document, routes
from transport.openapi._operations import OPERATIONS, Operation

__all__ = ["OPERATIONS", "Operation", "document", "routes"]
