"""The edge gateway (API Edge): device onboarding and signed, encrypted telemetry.

- :class:`~vitalchain.gateway.service.Gateway`: the service; every route calls into it.
- :func:`~vitalchain.gateway.app.create_app`: the FastAPI app (OpenAPI at ``/openapi.json``).
- :mod:`.ingest`: the one ingest core behind HTTP and MQTT.
- :mod:`.broker`: mosquitto with per-device credentials and ACLs (dynamic security).
"""
