"""One settings class for the gateway (pydantic-settings: env ``VITALCHAIN_GATEWAY_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from vitalchain.crypto.aead import Suite

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VITALCHAIN_GATEWAY_", extra="forbid")

    data_dir: Path = Path("var/gateway")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    group_id: int = Field(1, ge=1, lt=2**64)
    master_object_id: int = Field(1, ge=0, lt=2**64)
    admin_token: SecretStr | None = None
    rpc_url: str | None = None  # None: the embedded in-process chain
    store_dsn: str | None = None  # a PostgreSQL DSN; None: SQLite and block files in data_dir
    clock_skew_s: int = Field(300, ge=1)
    session_ttl_s: int = Field(900, ge=10)
    pairing_ttl_default_s: int = 900
    max_ticket_attempts: int = 5
    rate_per_s: float = Field(50.0, gt=0)
    rate_burst: int = Field(100, ge=1)
    max_message_bytes: int = 64 * 1024
    max_readings: int = 100
    suites: tuple[Suite, ...] = tuple(Suite)
    revocation_poll_s: float = Field(0.25, gt=0)
    mqtt: bool = True
    alert_ring_k: int = Field(8, ge=1, le=63)  # other devices in an alert's ring (spec: alert.md)
    alert_ack_timeout_s: float = Field(120.0, gt=0)  # then escalate to the next provider
    mqtt_port: int | None = None  # None: a free port for the managed broker
