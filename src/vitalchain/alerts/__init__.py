"""The alarm system's server side: rules, escalation, ``alarms.db``, the alert service and its
delivery (WebSocket, MQTT, the signed ack/snooze API)."""
