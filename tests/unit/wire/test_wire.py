"""The wire formats on their own: round trips, strict JSON, and the DecodeError codes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from vitalchain.errors import DecodeError
from vitalchain.vitals import Vital
from vitalchain.wire.access import AccessResponse, Challenge, access_message
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.alert import (
    ALERT_CONTEXT,
    AlertObject,
    Notification,
    action_message,
    alert_context,
    read_notification,
)
from vitalchain.wire.block import (
    Block,
    BlockEntry,
    KeyEntry,
    Section,
    encode_payload,
    parse_payload,
)
from vitalchain.wire.envelope import STANZA_SIZE, EnvelopeFrame, Stanza
from vitalchain.wire.framing import Kind, Reader, header
from vitalchain.wire.onboarding import AssociationReply, MqttGrant, TicketRequest
from vitalchain.wire.telemetry import (
    MESSAGE_HEADER,
    RING_HEADER,
    Ack,
    Payload,
    ReadingItem,
    Refusal,
    parse_answer,
)

ADDRESS = to_checksum_address(bytes.fromhex("ab" * 20))


def test_headers() -> None:
    assert (MESSAGE_HEADER, RING_HEADER) == (b"VCm\x01", b"VCm\x02")
    assert header(Kind.BLOCK, 1) == b"VCb\x01"
    with pytest.raises(DecodeError) as err:
        Reader(b"VCm\x09", Kind.MESSAGE, frozenset({1, 2}))
    assert err.value.code == "unknown_version"


def _payload() -> Payload:
    return Payload(7, ADDRESS, 1_000, (ReadingItem(1, Vital.SPO2, 97, "%", 999),))


def test_payload_round_trip_keeps_the_signed_bytes() -> None:
    data = _payload().encode()
    assert data == (
        b'{"v":1,"group":7,"device":"' + ADDRESS.encode() + b'","sent_at":1000,'
        b'"readings":[{"seq":1,"vital":"spo2","value":97,"unit":"%","t":999}]}'
    )
    parsed = Payload.parse(data)
    assert (parsed.group, parsed.device, parsed.readings[0].vital) == (7, ADDRESS, Vital.SPO2)


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(extra=1),
        lambda b: b.update(v=2),
        lambda b: b.update(group="7"),
        lambda b: b.update(readings=[]),
        lambda b: b["readings"][0].update(seq=True),
        lambda b: b["readings"][0].update(seq=2**63),
        lambda b: b["readings"][0].update(vital="mood"),
        lambda b: b["readings"][0].update(value="97"),
        lambda b: b["readings"][0].pop("unit"),
    ],
)
def test_payload_is_strict(edit: object) -> None:
    body = json.loads(_payload().encode())
    edit(body)  # type: ignore[operator]
    with pytest.raises(DecodeError) as err:
        Payload.parse(json.dumps(body).encode())
    assert err.value.code == "invalid_payload"


def test_payload_reading_limit_is_the_callers() -> None:
    body = json.loads(_payload().encode())
    body["readings"] *= 3
    data = json.dumps(body).encode()
    with pytest.raises(DecodeError):
        Payload.parse(data, max_readings=2)
    assert len(Payload.parse(data, max_readings=None).readings) == 3


def test_ack_and_refusal_round_trip() -> None:
    ack = Ack(3, 19, bytes(32))
    refusal = Refusal("replayed", "already stored", bytes(32))
    assert (parse_answer(ack.encode()), parse_answer(refusal.encode())) == (ack, refusal)
    with pytest.raises(DecodeError):
        parse_answer(b'{"v":1,"message_id":"00"}')


def test_envelope_frame_round_trip_and_limits() -> None:
    stanza = Stanza(b"\x01" * 20, b"\x02" * 33, b"\x03" * 48)
    frame = EnvelopeFrame(1, (stanza,), b"\x04" * 32, b"\x05" * 28)
    data = frame.encode()
    assert data[:4] == b"VCe\x01"
    assert EnvelopeFrame.parse(data) == frame
    assert Stanza.parse(stanza.encode()) == stanza
    with pytest.raises(DecodeError):
        Stanza.parse(bytes(STANZA_SIZE - 1))
    with pytest.raises(DecodeError):
        EnvelopeFrame.parse(data[:-1])  # the payload is shorter than nonce and tag
    with pytest.raises(DecodeError) as err:
        EnvelopeFrame.parse(data[:3] + b"\x02" + data[4:])
    assert err.value.code == "unknown_version"


def _section(scope: int, payload: bytes | None) -> Section:
    digest = hashlib.sha256(payload or b"").digest()
    return Section(scope, 1, 1, bytes(32), digest, payload)


def _block() -> Block:
    sections = (_section(Vital.SPO2.bit, b"p" * 40), _section(Vital.HEART_RATE.bit, b"q" * 30))
    return Block(2, 1, ADDRESS, 1, bytes(32), 0, 5, 2, Vital.SPO2.bit | Vital.HEART_RATE.bit,
                 sections, ADDRESS, b"s" * 65)  # fmt: skip


def test_block_round_trip_and_hashes() -> None:
    block = _block()
    data = block.encode()
    assert data[:4] == b"VCb\x02"
    assert Block.parse(data) == block
    assert data.startswith(block.signed_part() + block.signature)
    with pytest.raises(DecodeError) as err:
        Block.parse(data + b"\0")
    assert err.value.code == "trailing_bytes"


def test_a_withheld_section_keeps_the_block_hash_leaf_and_signed_part() -> None:
    block = _block()
    shown = block.redacted([0])
    assert shown.withheld() == [1]
    assert b"q" * 30 not in shown.encode()
    again = Block.parse(shown.encode())
    assert again.sections[1].payload is None
    assert (again.hash, again.leaf, again.signed_part()) == (
        block.hash,
        block.leaf,
        block.signed_part(),
    )


def test_block_sections_must_add_up() -> None:
    block = _block()
    for bad in (
        replace(block, readings=3),  # the sections hold 2
        replace(block, vitals=Vital.SPO2.bit),  # the sections' union is wider
        replace(block, sections=(block.sections[0], block.sections[0]), vitals=Vital.SPO2.bit),
        replace(block, sections=()),
    ):
        with pytest.raises(DecodeError):
            Block.parse(bad.encode())


def test_key_entry_round_trip_and_a_v1_ring_stanza_reads_as_section_0() -> None:
    stanza = Stanza(b"\x01" * 20, b"\x02" * 33, b"\x03" * 48)
    entry = KeyEntry(b"\x01" * 20, ((0, stanza), (3, stanza)))
    data = entry.encode()
    assert data[:4] == b"VCk\x01"
    assert KeyEntry.parse(data) == entry
    assert KeyEntry.parse(stanza.encode()) == KeyEntry(stanza.recipient, ((0, stanza),))
    assert entry.stanza(3) == stanza
    assert entry.stanza(1) is None
    for bad in (
        data[:-1],
        data + b"\0",
        KeyEntry(b"\x01" * 20, ((3, stanza), (0, stanza))).encode(),  # not ascending
        KeyEntry(b"\x01" * 20, ()).encode(),
    ):
        with pytest.raises(DecodeError):
            KeyEntry.parse(bad)


def test_block_payload() -> None:
    entries = [BlockEntry(ADDRESS, b"{}", b"\x01" * 65)]
    assert parse_payload(encode_payload(entries)) == entries
    with pytest.raises(DecodeError) as err:
        parse_payload(b'{"v":2,"messages":[]}')
    assert err.value.code == "unknown_version"
    for bad in (b"[]", b'{"v":1}', b'{"v":1,"messages":[{"device":1}]}', b"\xff"):
        with pytest.raises(DecodeError) as err:
            parse_payload(bad)
        assert err.value.code == "decode_error"


def test_onboarding_bodies_are_strict() -> None:
    request = TicketRequest(v=1, object_id=42, device_key="02" * 33, pairing_code="K7QM")
    assert TicketRequest.parse(request.encode()) == request
    for bad in ('{"object_id":42,"device_key":"02","pairing_code":"K"}',  # v missing
                '{"v":1,"object_id":"42","device_key":"02","pairing_code":"K"}',
                '{"v":1,"object_id":42,"device_key":"02","pairing_code":"K","x":1}'):  # fmt: skip
        with pytest.raises(DecodeError) as err:
            TicketRequest.parse(bad)
        assert err.value.code == "invalid_request"
    grant = MqttGrant(host="h", port=1, username="u", password="p", telemetry_topic="t",
                      ack_topic="a")  # fmt: skip
    reply = AssociationReply(
        v=1, status="active", device=ADDRESS, block_number=3, tx_hash="00", mqtt=grant
    )
    assert AssociationReply.parse(reply.encode()).mqtt == grant


def test_association_v2_carries_the_telemetry_url_and_v1_is_unchanged() -> None:
    """v1 encodes as before v2 existed (no telemetry_url key) and is read; v2 needs its URL,
    an http URL of a host and port; a v1 with a URL, or a v2 without, is refused."""
    fields = {"status": "active", "device": ADDRESS, "block_number": 3, "tx_hash": "00"}
    v1 = AssociationReply(v=1, mqtt=None, **fields)  # type: ignore[arg-type]
    assert json.loads(v1.encode()) == {"v": 1, **fields, "mqtt": None}
    assert AssociationReply.parse(v1.encode()).telemetry_url is None
    url = "http://127.0.0.1:8701"
    v2 = AssociationReply(v=2, mqtt=None, telemetry_url=url, **fields)  # type: ignore[arg-type]
    assert AssociationReply.parse(v2.encode()).telemetry_url == url
    assert (
        AssociationReply.parse(
            json.dumps({"v": 2, **fields, "mqtt": None, "telemetry_url": "http://[::1]:9"})
        ).telemetry_url
        == "http://[::1]:9"
    )
    for bad in (
        {"v": 1, "telemetry_url": url},
        {"v": 2},
        {"v": 2, "telemetry_url": "https://127.0.0.1:8701"},
        {"v": 2, "telemetry_url": "http://127.0.0.1:8701/v1/telemetry"},
        {"v": 2, "telemetry_url": "http://127.0.0.1"},
        {"v": 3, "telemetry_url": url},
    ):
        with pytest.raises(DecodeError) as err:
            AssociationReply.parse(json.dumps({**fields, "mqtt": None, **bad}))
        assert err.value.code == "invalid_request", bad


def test_access_and_alert_bytes() -> None:
    message = access_message(b"n" * 32, 7, ADDRESS, 2, None)
    assert len(message) == 32 + 8 + 20 + 8 + 8
    assert message.endswith(bytes(8))
    assert Challenge.parse('{"v":1,"nonce":"00","expires_at":5}').expires_at == 5
    assert AccessResponse.parse('{"v":1,"numbers":[],"blocks":[]}').blocks == []
    assert alert_context(7, b"d" * 32) == ALERT_CONTEXT + (7).to_bytes(8, "big") + b"d" * 32
    assert action_message("ack", b"\x01", "a", "b") == b"ack\n01\na\nb"


def _alert_json() -> dict[str, object]:
    return {
        "v": 2, "alert_id": "00" * 16, "group_id": 7, "kind": "stale", "raised_at": 1,
        "received_at": 1, "envelope": "ab", "digest": "00" * 32, "ring": None,
        "gateway": ADDRESS, "signature": "00" * 65,
    }  # fmt: skip


def test_alert_object_is_strict_and_versioned() -> None:
    assert AlertObject.parse_value(_alert_json()).check().kind == "stale"
    for edit in ({"v": 3}, {"v": 1, "kind": "technical"}, {"digest": "00"}, {"group_id": "7"}):
        with pytest.raises(DecodeError):
            AlertObject.parse_value({**_alert_json(), **edit}).check()


def test_notification_versions() -> None:
    alert = _alert_json()
    v2 = Notification(alert_id="aa", recipient=ADDRESS, tier=0, priority="high", repeat=1,
                      received_at=1, notified_at=2, alert=alert)  # fmt: skip
    assert read_notification(v2.to_json()) == v2.to_json()
    v1 = {k: v for k, v in v2.to_json().items() if k not in ("alert_id", "priority", "repeat")}
    read = read_notification({**v1, "v": 1})
    assert (read["alert_id"], read["priority"], read["repeat"]) == ("00" * 16, None, 0)
    junk: list[object] = [
        {**v2.to_json(), "extra": 1},
        {**v2.to_json(), "tier": "top"},
        {"v": 3},
        [],
    ]
    for frame in junk:
        with pytest.raises(DecodeError):
            read_notification(frame)
