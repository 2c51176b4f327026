"""Simulated wearables: enrol, onboard and stream realistic vitals through a gateway.

Physiology runs on an accelerated clock (an hour of a patient's day in a minute, say), while
each message carries the real time, because the gateway checks device clocks against its own.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from vitalchain.crypto.aead import Suite
from vitalchain.crypto.keys import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.physiology import (
    DEFAULT_INTERVAL_S,
    DeviceKind,
    Episode,
    PatientProfile,
    VitalsGenerator,
    random_episodes,
)
from vitalchain.edge.client import refusal
from vitalchain.edge.codes import Refused

__all__ = ["SimulatedDevice", "Simulation", "SimulationStats", "enrol"]


def enrol(http: httpx.Client, admin_token: str, patient: str, label: str = "") -> str:
    """A pairing code for ``patient``, created with the gateway's admin token."""
    response = http.post(
        "/v1/enrolments",
        json={"v": 1, "patient": patient, "label": label[:100]},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    if response.status_code != 201:
        refused = refusal(response, Refused)
        raise DeviceError(refused.message, code=refused.code, status=refused.status)
    return str(response.json()["pairing_code"])


@dataclass
class SimulatedDevice:
    client: DeviceClient
    kind: DeviceKind
    generator: VitalsGenerator
    patient: str
    episodes: tuple[Episode, ...]
    interval_s: float
    next_due_s: float = 0.0


@dataclass
class SimulationStats:
    sent_messages: int = 0
    accepted_readings: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    simulated_s: float = 0.0
    wall_s: float = 0.0


class Simulation:
    def __init__(
        self,
        http: httpx.Client,
        admin_token: str,
        *,
        patients: int = 2,
        kinds: Sequence[DeviceKind] = (DeviceKind.BP_CUFF, DeviceKind.PULSE_OXIMETER),
        seed: int | None = None,
        speedup: float = 60.0,
        episode_rate_per_hour: float = 0.5,
        horizon_s: float = 6 * 3600,
        scripted: Sequence[Episode] = (),
        suite: Suite = Suite.CHACHA20_POLY1305,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.admin_token = admin_token
        self.rng = random.Random(seed)
        self.speedup = speedup
        self.clock = clock
        self.horizon_s = horizon_s
        self.episode_rate_per_hour = episode_rate_per_hour
        self.devices: list[SimulatedDevice] = []
        self.patients: dict[str, PrivateKey] = {}
        for n in range(patients):
            patient = PrivateKey.generate()
            self.patients[patient.address] = patient
            profile = PatientProfile.random(self.rng)
            episodes = tuple(random_episodes(self.rng, horizon_s, episode_rate_per_hour))
            if n == 0:  # a known episode (demos and tests need one whatever the seed)
                episodes = tuple(sorted((*episodes, *scripted), key=lambda e: e.start_s))
            generator = VitalsGenerator(profile, episodes, seed=self.rng.randrange(2**32))
            for kind in kinds:  # one patient wears several devices
                client = DeviceClient(
                    PrivateKey.generate(),
                    self.rng.randrange(2**63),
                    suite=suite,
                    http=http,
                    clock=clock,
                )
                self.devices.append(
                    SimulatedDevice(
                        client, kind, generator, patient.address, episodes, DEFAULT_INTERVAL_S[kind]
                    )
                )

    def add_device(self, client: DeviceClient, kind: DeviceKind, patient: str) -> SimulatedDevice:
        """Stream from an already onboarded device too (one generated physiology per patient)."""
        same = [d for d in self.devices if d.patient == patient]
        if same:
            generator, episodes = same[0].generator, same[0].episodes
        else:
            profile = PatientProfile.random(self.rng)
            episodes = tuple(random_episodes(self.rng, self.horizon_s, self.episode_rate_per_hour))
            generator = VitalsGenerator(profile, episodes, seed=self.rng.randrange(2**32))
        device = SimulatedDevice(
            client, kind, generator, patient, episodes, DEFAULT_INTERVAL_S[kind]
        )
        self.devices.append(device)
        return device

    def onboard(self) -> None:
        for device in self.devices:
            code = enrol(
                self.http,
                self.admin_token,
                device.patient,
                f"{device.kind} of {device.patient[:10]}",
            )
            device.client.onboard(code)

    def run(
        self,
        simulated_s: float,
        *,
        publish: Callable[[SimulatedDevice, bytes], dict[str, object]] | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> SimulationStats:
        """Stream until ``simulated_s`` of patient time have passed (at ``speedup``)."""
        send = publish or (lambda device, message: device.client.send(message))
        stats = SimulationStats()
        start = time.monotonic()
        sim_t = 0.0
        while sim_t < simulated_s:
            ahead = sim_t / self.speedup - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            for device in [d for d in self.devices if d.next_due_s <= sim_t]:
                readings = device.generator.readings(device.kind, sim_t)
                for message in device.client.prepare_by_class(readings):
                    stats.sent_messages += 1
                    try:
                        ack = send(device, message)
                    except DeviceError as exc:
                        stats.refused[str(exc.code)] += 1
                    else:
                        stats.accepted_readings += int(str(ack["accepted"]))
                device.next_due_s = sim_t + device.interval_s
            sim_t = min(d.next_due_s for d in self.devices)
            if progress:
                progress(min(sim_t, simulated_s) / simulated_s)
        stats.simulated_s = simulated_s
        stats.wall_s = time.monotonic() - start
        return stats
