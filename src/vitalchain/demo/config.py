"""The demo's settings, the one owner of their defaults.

Apart from the scenario so that ``vitalchain demo``'s options can take their defaults from
here without importing what the scenario runs (every command line would pay for that at start).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    gateways: int = 2
    providers: int = 3
    patients: int = 20
    patient_minutes: float = 20.0  # patient time simulated
    speedup: float = 240.0  # simulated seconds per real second (an upper bound: see docs)
    episodes_per_hour: float = 6.0  # abnormal episodes per patient-hour
    seed: int = 2026
    rpc_url: str | None = None  # None: the embedded in-process chain
    mqtt: bool = True  # gateway 1's devices publish over MQTT when mosquitto can start
    ring_k: int = 8

    def check(self) -> None:
        """Refuse sizes the scenario cannot run (the CLI reports these as bad arguments)."""
        if not 1 <= self.gateways <= 8:
            raise ValueError("gateways: 1 to 8")
        if not 2 <= self.providers <= 50:
            raise ValueError("providers: 2 to 50 (one of them has its consent revoked)")
        if not self.gateways * 2 <= self.patients <= 500:
            raise ValueError("patients: at least 2 per gateway, at most 500")
        if not 0 < self.patient_minutes <= 24 * 60 or self.speedup < 1:
            raise ValueError("patient minutes: above 0, at most a day; speedup at least 1")
