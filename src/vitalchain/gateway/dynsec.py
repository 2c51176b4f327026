"""The broker's dynamic-security administration: who may publish and read which topic.

Devices publish telemetry to a mosquitto broker and the gateway subscribes (docs/spec/mqtt.md).
The broker's dynamic-security plugin stops a device from publishing as another: every client
gets one role that grants exactly its own topics, and the default policy denies the rest. The
gateway manages those roles over MQTT (``$CONTROL/dynamic-security/v1``) as the dynsec admin, so
a broker run by someone else is managed exactly like the one
:class:`~vitalchain.services.mosquitto.Mosquitto` starts here. The topics themselves are
:mod:`vitalchain.wire.mqtt`'s.

Findings about mosquitto 2.0.11 that shaped this module:

- ``deleteClient``, ``setClientPassword``, ``modifyClient`` and ``addClientRole`` disconnect
  the client's live connections (MQTT v5 reason 0x98 "administrative action").
- Deleting a role while a client still holds it corrupts the plugin's state: ``getClient``
  then says "Internal error" and a later command can crash the broker
  (eclipse-mosquitto/mosquitto#2660). We always delete the client first.
- Any username without a bound client id may connect with another client's id and so kick it
  off (session takeover). Every client we create is bound to ``client id == username``.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.logs import pseudonym
from vitalchain.services.mosquitto import DEFAULT_ACL_ACCESS, BrokerEndpoint, BrokerError
from vitalchain.services.mqtt_client import connect_and_wait, make_client
from vitalchain.wire.mqtt import (
    ack_pattern,
    ack_topic,
    alerts_pattern,
    alerts_topic,
    check_device,
    check_group,
    telemetry_pattern,
    telemetry_topic,
)

__all__ = ["BrokerAdmin", "DeviceCredentials"]

log = logging.getLogger(__name__)

# The dynsec plugin's own topics (mosquitto's API, not ours).
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"


def _gateway_role(group_id: int) -> str:
    return f"gateway-{group_id}"


def _device_role(device: str) -> str:
    return f"device-{device}"


@dataclass(frozen=True)
class DeviceCredentials:
    """What a device needs to reach the broker; handed over inside the encrypted onboarding."""

    username: str
    password: str = field(repr=False)
    telemetry_topic: str
    ack_topic: str

    @property
    def client_id(self) -> str:
        """The broker accepts this username only with this MQTT client id."""
        return self.username


def _acl(acltype: str, topic: str) -> dict[str, object]:
    return {"acltype": acltype, "topic": topic, "allow": True}


@dataclass
class _Pending:
    size: int
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)


class BrokerAdmin:
    """Manages credentials and ACLs through $CONTROL/dynamic-security/v1 as the dynsec admin.

    Commands go as one JSON batch per call; each carries ``correlationData`` so responses are
    matched even when several admins share the broadcast response topic.
    """

    def __init__(
        self, endpoint: BrokerEndpoint, username: str, password: str, timeout: float = 10
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._username = username
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._failed_pubacks: dict[int, ReasonCode] = {}
        self._ready = False
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self._policy_set = False
        self._client = make_client(
            f"vitalchain-admin-{secrets.token_hex(6)}",
            username,
            password,
            self,
            on_publish=self._on_publish,
        )
        # After a broker restart, be back within seconds (paho's default grows to 2 min).
        self._client.reconnect_delay_set(1, 10)
        connect_and_wait(
            self._client,
            endpoint.host,
            endpoint.port,
            ready=self._wait_ready,
            unreachable=f"the broker at {endpoint.host}:{endpoint.port}",
            fail=lambda why: BrokerError(why, code="broker_unavailable"),
            cleanup=self.close,
        )

    def _wait_ready(self) -> str | None:
        """None once connected and subscribed to the dynsec responses, else why not."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self._ready or self._refused is not None, self.timeout)
            refused = self._refused
        if ok and refused is None:
            return None
        return f"dynsec admin could not connect: {refused or f'no answer within {self.timeout}s'}"

    # -- public operations --

    def ensure_gateway(self, group_id: int, username: str, password: str) -> None:
        """Create or update the gateway client of ``group_id``; idempotent.

        Updating an existing client resets its password and so disconnects a live session of
        it: call this before the gateway connects.
        """
        check_group(group_id)
        if not username or not password:
            raise ValueError("gateway username and password must be non-empty")
        if username == self._username:
            raise ValueError("a gateway cannot use the dynsec admin's username")
        self._ensure_policy()
        role = _gateway_role(group_id)
        telemetry = telemetry_pattern(group_id)
        acls = [
            _acl("subscribePattern", telemetry),
            _acl("publishClientReceive", telemetry),
            _acl("publishClientSend", ack_pattern(group_id)),
            _acl("publishClientSend", alerts_pattern(group_id)),
        ]
        client = {
            "username": username,
            "password": password,
            "clientid": username,
            "roles": [{"rolename": role}],
        }
        created = self._run(
            [
                {"command": "createRole", "rolename": role, "acls": acls},
                {"command": "modifyRole", "rolename": role, "acls": acls},
                {"command": "createClient", **client},
            ],
            tolerate=[{"Role already exists"}, set(), {"Client already exists"}],
        )
        if created[2].get("error") == "Client already exists":
            self._run([{"command": "modifyClient", **client}])
        log.info("broker: gateway client %s ready for group %d", username, group_id)

    def add_device(self, group_id: int, device: str) -> DeviceCredentials:
        """(Re)create ``device``'s client with a fresh password; an old session is cut off."""
        creds = DeviceCredentials(
            username=device,
            password=secrets.token_urlsafe(24),
            telemetry_topic=telemetry_topic(group_id, device),
            ack_topic=ack_topic(group_id, device),
        )
        acls = [
            _acl("publishClientSend", creds.telemetry_topic),
            _acl("subscribeLiteral", creds.ack_topic),
            _acl("publishClientReceive", creds.ack_topic),
        ]
        self._recreate(creds, _device_role(device), acls)
        log.info("broker: device %s may publish to its telemetry topic", pseudonym(device))
        return creds

    def add_alert_subscriber(self, group_id: int, address: str) -> DeviceCredentials:
        """(Re)create a client for a patient or provider that may only read its own alerts."""
        check_group(group_id)
        check_device(address)
        topic = alerts_topic(group_id, address)
        username = f"alerts-{group_id}-{address}"
        creds = DeviceCredentials(username, secrets.token_urlsafe(24), topic, topic)
        acls = [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
        self._recreate(creds, username, acls)  # the role is named after the client
        return creds

    def remove_device(self, device: str) -> None:
        """Delete ``device``'s client and role; the broker disconnects a live session at once.

        Idempotent: removing an unknown device is not an error.
        """
        check_device(device)
        self._run(
            [
                {"command": "deleteClient", "username": device},
                {"command": "deleteRole", "rolename": _device_role(device)},
            ],
            tolerate=[{"Client not found"}, {"Role not found"}],
        )
        log.info("broker: device %s removed", pseudonym(device))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- commands --

    def _recreate(
        self, creds: DeviceCredentials, role: str, acls: Sequence[Mapping[str, object]]
    ) -> None:
        """Delete the client and its role if they exist, then create both afresh, so a new
        password takes effect and an old session is cut off."""
        self._ensure_policy()
        # Client before role, always: deleting a role still held crashes 2.0.11 (#2660).
        self._run(
            [
                {"command": "deleteClient", "username": creds.username},
                {"command": "deleteRole", "rolename": role},
                {"command": "createRole", "rolename": role, "acls": list(acls)},
                {
                    "command": "createClient",
                    "username": creds.username,
                    "password": creds.password,
                    "clientid": creds.client_id,
                    "roles": [{"rolename": role}],
                },
            ],
            tolerate=[{"Client not found"}, {"Role not found"}, set(), set()],
        )

    def _ensure_policy(self) -> None:
        """Default deny, set over MQTT so a broker we did not start ends up the same."""
        if self._policy_set:
            return
        acls = [{"acltype": k, "allow": v} for k, v in DEFAULT_ACL_ACCESS.items()]
        self._run([{"command": "setDefaultACLAccess", "acls": acls}])
        self._policy_set = True

    def _run(
        self,
        commands: Sequence[Mapping[str, object]],
        tolerate: Sequence[set[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Send one batch, wait for every response, raise on an error not tolerated."""
        request = secrets.token_hex(8)
        batch = [{**c, "correlationData": f"{request}:{i}"} for i, c in enumerate(commands)]
        pending = _Pending(size=len(batch))
        with self._cond:
            if not self._ready:
                raise BrokerError("dynsec admin is not connected", code="broker_unavailable")
            self._pending[request] = pending
        try:
            # Never publish under our lock: paho calls on_publish holding its own.
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerError(
                    f"could not send dynsec command: {mqtt.error_string(info.rc)}",
                    code="broker_unavailable",
                )
            with self._cond:
                ok = self._cond.wait_for(
                    lambda: (
                        len(pending.responses) == pending.size
                        or info.mid in self._failed_pubacks
                        or not self._ready
                    ),
                    self.timeout,
                )
                refused = self._failed_pubacks.pop(info.mid, None)
                ready = self._ready
        finally:
            with self._cond:
                self._pending.pop(request, None)
        names = ", ".join(str(c["command"]) for c in commands)
        if refused is not None:
            raise BrokerError(f"broker refused dynsec command ({names}): {refused}")
        if not ok or len(pending.responses) != pending.size:
            why = "lost the connection" if not ready else f"no response within {self.timeout}s"
            raise BrokerError(f"dynsec {why} ({names})", code="broker_unavailable")
        responses = [pending.responses[i] for i in range(pending.size)]
        allowed = tolerate or [set() for _ in commands]
        for response, ok_errors in zip(responses, allowed, strict=True):
            error = response.get("error")
            if error is not None and error not in ok_errors:
                raise BrokerError(f"dynsec {response.get('command')}: {error}")
        return responses

    # -- paho callbacks (network thread), through services.mqtt_client.make_client --

    def _on_connect(self, reason: ReasonCode, session_present: bool) -> None:
        if reason.is_failure:
            with self._cond:
                self._refused = str(reason)
                self._cond.notify_all()
            self._client.disconnect()  # stop paho retrying with credentials that do not work
            return
        result, mid = self._client.subscribe(RESPONSE_TOPIC, qos=1)
        with self._cond:
            self._sub_mid = mid if result == mqtt.MQTT_ERR_SUCCESS else None

    def _on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None:
        with self._cond:
            if mid != self._sub_mid:
                return
            if any(r.is_failure for r in reasons):
                self._refused = f"subscribe to {RESPONSE_TOPIC}: {reasons[0]}"
            else:
                self._ready = True
            self._cond.notify_all()

    def _on_disconnect(self, reason: ReasonCode) -> None:
        with self._cond:
            self._ready = False
            self._cond.notify_all()

    def _on_publish(self, mid: int, reason: ReasonCode) -> None:
        if reason.is_failure:
            with self._cond:
                self._failed_pubacks[mid] = reason
                self._cond.notify_all()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
            responses = body["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("broker: ignoring a malformed dynsec response")
            return
        with self._cond:
            for response in responses if isinstance(responses, list) else []:
                if not isinstance(response, dict):
                    continue
                request, _, index = str(response.get("correlationData", "")).partition(":")
                pending = self._pending.get(request)
                if pending is not None and index.isdigit() and int(index) < pending.size:
                    pending.responses[int(index)] = response
            self._cond.notify_all()
