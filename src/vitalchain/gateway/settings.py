"""One settings class for the gateway (pydantic-settings: env ``VITALCHAIN_GATEWAY_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vitalchain.crypto.aead import Suite

__all__ = ["MIN_ADMIN_TOKEN_BYTES", "GatewaySettings"]

MIN_ADMIN_TOKEN_BYTES = 16


class GatewaySettings(BaseSettings):
    # hide_input_in_errors: a refused value (a short admin token, a DSN) is never echoed.
    model_config = SettingsConfigDict(
        env_prefix="VITALCHAIN_GATEWAY_", extra="forbid", hide_input_in_errors=True
    )

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
    # Pre-authentication limits, per client address and route, on what creates state before
    # anyone is authenticated (enrolments, sessions, challenges): a token bucket.
    preauth_rate_per_s: float = Field(2.0, gt=0)
    preauth_burst: int = Field(60, ge=1)
    purge_every_s: float = Field(60.0, gt=0)  # expired codes, sessions, challenges deleted
    rpc_timeout_s: float = Field(10.0, gt=0)  # every JSON-RPC call to the node, no retry
    # Telemetry's pre-authentication limit, per client (HTTP address, MQTT client): charged by
    # messages that fail before authenticating (docs/spec/telemetry.md, "Rate limits").
    telemetry_preauth_rate_per_s: float = Field(10.0, gt=0)
    telemetry_preauth_burst: int = Field(100, ge=1)
    # Messages one session key may carry before the device must re-key (None: the suite's
    # limit, crypto.aead.USAGE_LIMITS); and how long a re-keyed session still carries
    # telemetry (in-flight messages, MQTT redeliveries).  docs/spec/onboarding.md, section 5.
    session_message_limit: int | None = Field(None, ge=1, le=2**32)
    rekey_grace_s: int = Field(60, ge=0, le=3600)
    rate_per_s: float = Field(50.0, gt=0)
    rate_burst: int = Field(100, ge=1)
    max_message_bytes: int = 64 * 1024
    max_readings: int = 100
    # Processes verifying telemetry beside the node's (gateway/workers.py): None, the number
    # of cores this process may use; 0, none (everything in the node's process).
    ingest_workers: int | None = Field(None, ge=0, le=64)
    # Where the workers serve POST /v1/telemetry (SO_REUSEPORT), told to devices at
    # association; None: picked once per data dir, kept in <data_dir>/telemetry.port.
    telemetry_port: int | None = Field(None, ge=1, le=65535)
    suites: tuple[Suite, ...] = tuple(Suite)
    revocation_poll_s: float = Field(0.25, gt=0)
    # Health probes (gateway/health.py): how often chain, store and broker are checked, and
    # the chain probe's own short timeout, so a hung node shows as down within seconds.
    health_interval_s: float = Field(2.0, gt=0)
    health_timeout_s: float = Field(1.0, gt=0)
    mqtt: bool = True
    alert_ring_k: int = Field(8, ge=1, le=63)  # other devices in an alert's ring (spec: alert.md)
    # Alarms (docs/alarms.md): escalation to the next tier per priority when unacknowledged,
    # HIGH re-notification, receipt timeout (then the next tier at once and a technical alarm),
    # stale-device levels, and how long the chain or the store may be out of reach before a
    # technical alarm.
    alert_escalate_high_s: float = Field(60.0, gt=0, le=86400)
    alert_escalate_medium_s: float = Field(300.0, gt=0, le=86400)
    alert_escalate_low_s: float = Field(900.0, gt=0, le=86400)
    alert_repeat_high_s: float = Field(60.0, ge=0, le=86400)  # 0: HIGH alarms do not repeat
    alert_receipt_timeout_s: float = Field(30.0, gt=0, le=86400)
    alert_stale_warning_s: float = Field(900.0, ge=0, le=86400)  # 0: off
    alert_stale_urgent_s: float = Field(1800.0, ge=0, le=86400)  # 0: off
    alarm_outage_after_s: float = Field(60.0, gt=0, le=86400)
    mqtt_port: int | None = None  # None: picked once per data dir, kept in <data_dir>/mqtt/port
    # When a patient's block closes (readings, or age of its oldest message), and how often the
    # group's root is anchored (sealing/sealer.py, docs/spec/block.md).
    seal_max_readings: int = Field(120, ge=1, le=10_000)
    seal_max_age_s: float = Field(60.0, gt=0)
    anchor_every_s: float = Field(30.0, gt=0)

    @field_validator("admin_token")
    @classmethod
    def _admin_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """A short token can be guessed at HTTP speed: 16 bytes (128 bits if random) at least."""
        if value is not None and len(value.get_secret_value().encode()) < MIN_ADMIN_TOKEN_BYTES:
            raise ValueError(
                f"the admin token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        return value

    @model_validator(mode="after")
    def _stale_levels_in_order(self) -> GatewaySettings:
        """The urgent stale level comes after the warning (either 0: that level off)."""
        warning, urgent = self.alert_stale_warning_s, self.alert_stale_urgent_s
        if warning > 0 and urgent > 0 and urgent <= warning:
            raise ValueError(
                f"alert_stale_urgent_s ({urgent:g}) must be above alert_stale_warning_s"
                f" ({warning:g}), or either 0 to turn that level off"
            )
        return self
