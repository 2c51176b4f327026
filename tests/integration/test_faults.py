"""The fault trials of ``benchmarks/faults.py``, short (3 trials, outages of a few seconds).

Each runs the gateway as ``vitalchain gateway run`` in its own process against anvil in its
own, with devices streaming and resending what was not acknowledged, as the SDK does.  The
promise checked is the one a hospital relies on: no acknowledged reading is lost, readings
are stored again after every restart, anchoring catches up, and nothing is left running;
and for alarms (issue 13), that no alert is lost or duplicated by a kill -9 mid-episode.
"""

from __future__ import annotations

import pytest
from benchmarks import faults


@pytest.mark.parametrize("mqtt", [False, True], ids=["http", "mqtt"])
def test_kill9_under_load_loses_no_acknowledged_reading(mqtt: bool) -> None:
    outcome = faults.kill9(3, mqtt=mqtt, devices=3)
    assert outcome.acked > 0
    assert outcome.lost == 0, outcome
    assert len(outcome.stored_after) == 3
    assert min(outcome.stored_after) > 0, outcome  # devices are stored again after each restart
    assert outcome.anchored, outcome


@pytest.mark.parametrize("restart", [False, True], ids=["sigstop", "restart"])
def test_anvil_outage_loses_nothing_and_anchors_catch_up(restart: bool) -> None:
    outcome = faults.anvil_outage(4.0, restart=restart, devices=3)
    assert outcome.acked > 0
    assert outcome.lost == 0, outcome
    assert outcome.anchored, outcome


def test_postgres_outage_loses_nothing_and_refuses_with_503() -> None:
    outcome = faults.postgres_outage(4.0, devices=3)
    assert outcome.acked > 0
    assert outcome.lost == 0, outcome
    assert outcome.anchored, outcome
    api = {k: v for k, v in outcome.refusals.items() if k.startswith("store API")}
    assert api, "the store API was not asked during the outage"
    assert set(api) <= {"store API 201", "store API 503"}, api
    assert api.get("store API 503", 0) > 0, api


def test_kill9_with_an_alarm_episode_in_progress_loses_and_duplicates_no_alert() -> None:
    """Issue 13: two kills, one just after the confirming reading was stored (the alert raised,
    perhaps not yet delivered), one with the episode one reading short; each episode reaches
    the provider's SDK exactly once after its de-duplication by alert ID."""
    outcome = faults.alerts_kill9(2, devices=1)
    assert outcome.expected == 2, outcome
    assert outcome.lost == 0, outcome
    assert outcome.duplicated == 0, outcome
    assert outcome.delivered == 2, outcome
    assert sorted(outcome.kill_points) == ["2 of 3", "3 of 3"], outcome
