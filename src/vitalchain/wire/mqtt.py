"""MQTT topics (docs/spec/mqtt.md): the topic tree, its builders and its one parser.

Devices publish to ``vitalchain/v1/<group>/<device>/telemetry``, the group's gateway answers on
``.../<device>/ack`` and publishes alerts to ``vitalchain/v1/<group>/alerts/<address>``. The
broker's ACLs (set by :mod:`vitalchain.gateway.dynsec`) grant exactly these topics, so the
spelling is a security boundary: the group in canonical decimal, the device in EIP-55 mixed
case, one spelling each, so topics round-trip and ACLs cannot be sidestepped by case.

The EIP-55 check is :func:`vitalchain.wire.address.is_checksum_address` (cached: a topic is
checked on every telemetry message).
"""

from __future__ import annotations

import re
from typing import Final

from vitalchain.wire.address import is_checksum_address
from vitalchain.wire.telemetry import MAX_MESSAGE_BYTES

__all__ = [
    "ACK_PROPERTY",
    "CUMULATIVE_ACK",
    "MAX_PACKET_SIZE",
    "TOPIC_PREFIX",
    "ack_pattern",
    "ack_topic",
    "alerts_pattern",
    "alerts_topic",
    "check_device",
    "check_group",
    "parse_telemetry_topic",
    "telemetry_pattern",
    "telemetry_topic",
]

TOPIC_PREFIX: Final = "vitalchain/v1"  # the version of the topic tree; a new tree, a new prefix
# A whole MQTT packet: the 64 KiB data message plus room for the fixed header, topic and
# properties; the managed broker's max_packet_size.
MAX_PACKET_SIZE: Final = MAX_MESSAGE_BYTES + 1024

# The MQTT v5 user property by which a device's telemetry says the highest acknowledgement
# version it reads (docs/spec/mqtt.md): "2" or more gets cumulative acks; absent, "1" or
# anything else, one v1 ack per message.  It chooses a format only, never what is accepted.
ACK_PROPERTY: Final = "vitalchain-ack"
CUMULATIVE_ACK: Final = 2

_GROUP_RE: Final = re.compile(r"0|[1-9][0-9]*")  # canonical decimal, so topics round-trip


def check_group(group_id: int) -> None:
    """ValueError unless ``group_id`` is a non-negative int (not a bool)."""
    if isinstance(group_id, bool) or not isinstance(group_id, int) or group_id < 0:
        raise ValueError(f"group id must be a non-negative int, not {group_id!r}")


def check_device(device: str) -> None:
    """ValueError unless ``device`` is an address in EIP-55 mixed case.

    ACL topics and dynsec usernames are case-sensitive: one spelling per device.
    """
    if not isinstance(device, str) or not is_checksum_address(device):
        raise ValueError(f"device must be an EIP-55 checksummed address, not {device!r}")


def telemetry_topic(group_id: int, device: str) -> str:
    """The only topic ``device`` may publish to."""
    check_group(group_id)
    check_device(device)
    return f"{TOPIC_PREFIX}/{group_id}/{device}/telemetry"


def ack_topic(group_id: int, device: str) -> str:
    """Where the group's gateway answers ``device``; only that device may read it."""
    check_group(group_id)
    check_device(device)
    return f"{TOPIC_PREFIX}/{group_id}/{device}/ack"


def alerts_topic(group_id: int, recipient: str) -> str:
    """Where the group's gateway publishes ``recipient``'s alert notices (docs/spec/alert.md);
    only that patient or provider may read it."""
    return f"{TOPIC_PREFIX}/{group_id}/alerts/{recipient}"


def telemetry_pattern(group_id: int) -> str:
    """The subscription of the group's gateway: every device's telemetry, and nothing else."""
    check_group(group_id)
    return f"{TOPIC_PREFIX}/{group_id}/+/telemetry"


def ack_pattern(group_id: int) -> str:
    """Every ack topic of the group (what its gateway may publish to)."""
    check_group(group_id)
    return f"{TOPIC_PREFIX}/{group_id}/+/ack"


def alerts_pattern(group_id: int) -> str:
    """Every alert topic of the group (what its gateway may publish to)."""
    check_group(group_id)
    return f"{TOPIC_PREFIX}/{group_id}/alerts/+"


def parse_telemetry_topic(topic: str) -> tuple[int, str]:
    """``(group_id, device)`` of a telemetry topic; ValueError for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[4] != "telemetry":
        raise ValueError(f"not a telemetry topic: {topic!r}")
    group, device = parts[2], parts[3]
    if not _GROUP_RE.fullmatch(group):
        raise ValueError(f"not a telemetry topic (group): {topic!r}")
    try:
        check_device(device)
    except ValueError:
        raise ValueError(f"not a telemetry topic (device): {topic!r}") from None
    return int(group), device
