"""The HTTP edge every app and client of vitalchain shares (docs/architecture.md).

- :mod:`~vitalchain.edge.codes`: the one table from an error code to its HTTP status (and,
  for an outage, the health component it reports to), and the refusals a route documents in
  the OpenAPI (``openapi_refusals``), drawn from it;
- :mod:`~vitalchain.edge.server`: the one set of exception handlers a FastAPI app installs;
- :mod:`~vitalchain.edge.client`: the one decoder of a refusal a client receives.

Domain errors carry a code only (:class:`~vitalchain.edge.codes.Refused`); the status is the
table's, so a route, a service and a client can never disagree about it.  This package sits on
the ground floor: it imports only ``vitalchain.errors`` and ``vitalchain.logs``.
"""
