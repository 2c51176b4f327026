"""The edge gateway (API Edge): device onboarding and signed, encrypted telemetry.

- :class:`~vitalchain.gateway.service.Gateway`: the service; every route calls into it.
- :func:`~vitalchain.gateway.app.create_app`: the FastAPI app (OpenAPI at ``/openapi.json``).
- :mod:`.ingest`: the one ingest core behind HTTP and MQTT.
- :mod:`.mqtt`: the gateway's MQTT client; :mod:`.dynsec`: per-device broker credentials and
  ACLs (dynamic security). The broker process itself is :mod:`vitalchain.services.mosquitto`.
"""
