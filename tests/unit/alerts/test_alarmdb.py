"""alarms.db: records survive a reopen, the schema is versioned, an old alerts.db is imported,
and the effects of one message reach the disk together with its journal cursor."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from vitalchain.alerts import alarmdb
from vitalchain.alerts.alarmdb import SCHEMA_VERSION, AlarmDb, Cursor
from vitalchain.alerts.escalation import AlertRecord, DeliveryRecord, SnoozeRecord
from vitalchain.alerts.rules import DeviceSeen, EpisodeState, Priority
from vitalchain.vitals import Vital

PATIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DOCTOR = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DEVICE = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
ALERT_ID = "ab" * 16


def episode(count: int, last_at: float = 10.0) -> EpisodeState:
    return EpisodeState(PATIENT, Vital.SPO2, last_at, pending=-1, count=count, first_out_at=1.0)


def alert_record(**changes: object) -> AlertRecord:
    fields: dict[str, object] = {
        "alert_id": ALERT_ID,
        "patient": PATIENT,
        "vital": Vital.SPO2,
        "priority": Priority.HIGH,
        "providers": (DOCTOR,),
        "opened_at": 5.0,
        "last_tier_at": 5.0,
        **changes,
    }
    return AlertRecord(**fields)  # type: ignore[arg-type]


def public(alert_id: bytes, kind: str = "threshold") -> str:
    return json.dumps({"v": 2, "alert_id": alert_id.hex(), "kind": kind, "raised_at": 5000})


def add(db: AlarmDb, alert_id: bytes, key_image: bytes | None) -> bool:
    return db.add_alert(alert_id, key_image, PATIENT, public(alert_id), kind="threshold",
                        priority="high", vital="spo2", chain=None, raised_at=5.0)  # fmt: skip


def test_every_record_survives_a_reopen_exactly(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = AlarmDb(path)
    records = {
        alarmdb.EPISODE: (EpisodeState, episode(2)),
        alarmdb.DEVICE: (DeviceSeen, DeviceSeen(PATIENT, DEVICE, 12.5, "warning")),
        alarmdb.ALERT: (AlertRecord, alert_record(acknowledged_by=DOCTOR, acknowledged_at=7.0)),
        alarmdb.DELIVERY: (DeliveryRecord, DeliveryRecord(ALERT_ID, DOCTOR, 0, 5.0, 6.0, 1)),
        alarmdb.SNOOZE: (SnoozeRecord, SnoozeRecord(DOCTOR, PATIENT, None, Priority.HIGH, 1, 301)),
    }
    db.episode_changed(records[alarmdb.EPISODE][1])
    db.device_seen(records[alarmdb.DEVICE][1])
    db.alert_changed(records[alarmdb.ALERT][1])
    db.delivery_changed(records[alarmdb.DELIVERY][1])
    db.snooze_changed(records[alarmdb.SNOOZE][1])
    db.episode_changed(episode(3))  # the latest record of an identity wins
    assert db.flush() is True
    assert db.flush() is False  # nothing left
    db.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AlarmDb(path)
    for kind, (cls, record) in records.items():
        (loaded,) = again.load(kind, cls)
        expected = episode(3) if kind == alarmdb.EPISODE else record
        # Enums come back as their values (the engine and escalator normalise on restore).
        assert loaded == expected, kind
    again.close()


def test_the_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = AlarmDb(path)
    assert db.schema_version == SCHEMA_VERSION
    db.close()
    AlarmDb(path).close()  # reopening the same version is fine
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(sqlite3.DatabaseError, match="newer than this version"):
        AlarmDb(path)


def _legacy_alerts_db(path: Path, rows: list[tuple[bytes, bytes | None, str, str, bytes | None]]
                      ) -> None:  # fmt: skip
    """The alert log of earlier versions, as care/alerts.py's _AlertLog (now alerts/service.py) created it."""
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE alerts (alert_id BLOB PRIMARY KEY, key_image BLOB UNIQUE,"
            " patient TEXT NOT NULL, body TEXT NOT NULL, recorded_tx BLOB)"
        )
        old.executemany("INSERT INTO alerts VALUES (?, ?, ?, ?, ?)", rows)


def test_an_old_alerts_db_is_imported_once_with_its_key_images(tmp_path: Path) -> None:
    legacy = tmp_path / "alerts.db"
    recorded, unrecorded, stale = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16
    _legacy_alerts_db(legacy, [
        (recorded, b"K1", PATIENT, public(recorded), b"\x99" * 32),
        (unrecorded, b"K2", PATIENT, public(unrecorded), None),
        (stale, None, PATIENT, public(stale, "stale"), None),
    ])  # fmt: skip
    db = AlarmDb(tmp_path / "alarms.db", legacy=legacy)
    assert db.meta("legacy_imported") == "3"
    found = db.alert(recorded)
    assert found is not None
    assert (found.patient, found.kind, found.recorded_tx, found.chain) == (
        PATIENT,
        "threshold",
        b"\x99" * 32,
        "recorded",
    )
    assert json.loads(found.body)["alert_id"] == recorded.hex()  # its public GET
    # A replay of an imported alert is still refused by its key image.
    assert add(db, b"\x04" * 16, b"K1") is False
    assert add(db, b"\x04" * 16, b"K9") is True
    # The unrecorded threshold alert is recorded at the next start; the stale one never.
    assert [json.loads(b)["alert_id"] for b in db.unrecorded()] == [unrecorded.hex()]
    db.close()
    # Imported once: a second open does not bring back what the new file has changed.
    again = AlarmDb(tmp_path / "alarms.db", legacy=legacy)
    again.recorded(unrecorded, b"\x98" * 32)
    again.close()
    third = AlarmDb(tmp_path / "alarms.db", legacy=legacy)
    assert [json.loads(b)["alert_id"] for b in third.unrecorded()] == [(b"\x04" * 16).hex()]
    third.close()


def test_a_replayed_key_image_is_refused_before_it_is_flushed(tmp_path: Path) -> None:
    db = AlarmDb(tmp_path / "alarms.db")
    assert add(db, b"\x01" * 16, b"K") is True
    assert add(db, b"\x02" * 16, b"K") is False  # staged, not yet on disk: still refused
    db.flush()
    assert add(db, b"\x03" * 16, b"K") is False
    db.close()


def test_what_one_message_changes_is_flushed_with_its_cursor_or_not_at_all(
    tmp_path: Path,
) -> None:
    """A flush from another thread while a message is being processed writes none of it."""
    path = tmp_path / "alarms.db"
    db = AlarmDb(path)
    inside, release = threading.Event(), threading.Event()

    def process() -> None:
        with db.processing(1, b"m1", 1000):
            db.episode_changed(episode(1))
            add(db, b"\x01" * 16, b"K")
            db.delivered(b"\x01" * 16, DOCTOR, 0, 0, "high", 5.0)
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=process)
    worker.start()
    assert inside.wait(10)
    db.flush()  # the alarm clock's lazy flush, mid-message
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM state").fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM alerts").fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM notices").fetchone()[0] == 0
        assert raw.execute("SELECT COUNT(*) FROM meta WHERE key = 'cursor'").fetchone()[0] == 0
    release.set()
    worker.join(10)
    db.flush()
    db.close()
    again = AlarmDb(path)
    assert again.load(alarmdb.EPISODE, EpisodeState) == [episode(1)]
    assert again.alert(b"\x01" * 16) is not None
    assert [n.recipient for n in again.pending_for(DOCTOR)] == [DOCTOR]
    assert again.cursor() == Cursor(1, b"m1", (), 1000)
    again.close()


def test_a_record_staged_on_one_thread_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    db = AlarmDb(tmp_path / "alarms.db")
    staged, direct = threading.Event(), threading.Event()

    def process() -> None:
        with db.processing(1, b"m1", 1000):
            db.device_seen(DeviceSeen(PATIENT, DEVICE, 10.0))  # older ...
            staged.set()
            direct.wait(10)

    worker = threading.Thread(target=process)
    worker.start()
    assert staged.wait(10)
    db.device_seen(DeviceSeen(PATIENT, DEVICE, 10.0, "warning"))  # ... newer, from the clock
    db.flush()
    direct.set()
    worker.join(10)
    db.flush()
    assert db.load(alarmdb.DEVICE, DeviceSeen) == [DeviceSeen(PATIENT, DEVICE, 10.0, "warning")]
    db.close()


def test_the_cursor_follows_out_of_order_and_reused_row_ids(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = AlarmDb(path)
    for row_id in (1, 2, 4, 5):  # 3 is still on its way
        with db.processing(row_id, bytes([row_id]), 100 * row_id):
            pass
    assert db.cursor() == Cursor(2, b"\x02", ((4, b"\x04"), (5, b"\x05")), 500)
    with db.processing(3, b"\x03", 300):
        pass
    assert db.cursor() == Cursor(5, b"\x05", (), 500)
    # SQLite gave pruned row 5's id to a newer message: rows below it were processed.
    with db.processing(5, b"\x55", 600):
        pass
    assert db.cursor() == Cursor(5, b"\x55", (), 600)
    db.close()  # flushes
    assert AlarmDb(path).cursor() == Cursor(5, b"\x55", (), 600)


def test_a_retired_alert_and_its_deliveries_are_gone_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = AlarmDb(path)
    other = "cd" * 16
    db.alert_changed(alert_record())
    db.alert_changed(alert_record(alert_id=other))
    db.delivery_changed(DeliveryRecord(ALERT_ID, DOCTOR, 0, 5.0, 5.0))
    db.delivery_changed(DeliveryRecord(other, DOCTOR, 0, 5.0, 5.0))
    db.flush()
    db.alert_retired(ALERT_ID)
    db.flush()
    db.purge(notices_before=0)
    db.close()
    again = AlarmDb(path)
    assert [r.alert_id for r in again.load(alarmdb.ALERT, AlertRecord)] == [other]
    assert [r.alert_id for r in again.load(alarmdb.DELIVERY, DeliveryRecord)] == [other]
    with sqlite3.connect(path) as raw:  # tombstones are purged at open
        assert raw.execute("SELECT COUNT(*) FROM state WHERE data IS NULL").fetchone()[0] == 0
    again.close()


def test_receipts_and_since_read_the_delivery_rows(tmp_path: Path) -> None:
    db = AlarmDb(tmp_path / "alarms.db")
    first, second = b"\x01" * 16, b"\x02" * 16
    db.delivered(first, DOCTOR, 0, 0, "high", 10.0)
    db.delivered(second, DOCTOR, 1, 0, "medium", 20.0)
    db.delivered(first, DOCTOR, 0, 1, "high", 30.0)  # a HIGH repeat: same row, later
    db.receipted(second, DOCTOR, 21.0)
    db.flush()
    assert [(n.alert_id, n.repeat) for n in db.pending_for(DOCTOR)] == [(first, 1)]
    assert [n.alert_id for n in db.since(DOCTOR, 15.0, 10)] == [second, first]
    assert db.since(PATIENT, 0, 10) == []
    notice = db.notice(first, DOCTOR)
    assert notice is not None
    assert (notice.first_at, notice.at) == (10.0, 30.0)
    db.close()


def test_only_a_changed_counter_makes_a_message_urgent(tmp_path: Path) -> None:
    """A plain in-range reading (only ``last_at`` moves) waits for the lazy flush; a counter
    that moves is flushed before the next message (the journal may prune the message)."""
    db = AlarmDb(tmp_path / "alarms.db")
    at_rest = EpisodeState(PATIENT, Vital.SPO2, 10.0)
    with db.processing(1, b"m1", 1000):
        db.episode_changed(at_rest)
    assert db.urgent() is False
    with db.processing(2, b"m2", 2000):
        db.episode_changed(episode(1, last_at=11.0))
    assert db.urgent() is True
    db.flush()
    with db.processing(3, b"m3", 3000):
        db.episode_changed(episode(1, last_at=12.0))  # the same run, a newer time only
    assert db.urgent() is False
    db.close()
    again = AlarmDb(tmp_path / "alarms.db")
    again.load(alarmdb.EPISODE, EpisodeState)  # what is stored is the reference again
    with again.processing(4, b"m4", 4000):
        again.episode_changed(episode(1, last_at=13.0))
    assert again.urgent() is False
    again.close()


def test_a_new_episode_at_rest_is_not_urgent_for_any_patient(tmp_path: Path) -> None:
    db = AlarmDb(tmp_path / "alarms.db")
    db.episode_changed(EpisodeState(PATIENT, Vital.SPO2, 10.0))
    db.episode_changed(EpisodeState(DOCTOR, Vital.HEART_RATE, 10.0))
    assert db.urgent() is False
    db.close()
