"""Settings: env ``VTELLER_*`` over an optional TOML file over embedded defaults."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vteller.assist.policy import AssistPolicy
from vteller.audit.retention import RetentionPolicy
from vteller.bank.webhook import WebhookConfig
from vteller.identity.policy import IdentityPolicy
from vteller.media.turn import TurnConfig
from vteller.review.policy import ReviewPolicy
from vteller.routing.appointments import AppointmentPolicy
from vteller.routing.policy import RoutingPolicy

TokenAlgorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]


class SettingsError(Exception):
    """A setting is invalid; the message names it."""


class S3Config(BaseModel):
    """`[s3]` / VTELLER_S3__*: recordings in S3-compatible object storage (when `bucket`
    is set; else files under data_dir/recordings)."""

    model_config = {"frozen": True, "extra": "forbid"}

    bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field("", max_length=200, pattern=r"^[A-Za-z0-9_./-]*$")
    endpoint_url: str | None = Field(None, pattern=r"^https?://[^\s/]+(/.*)?$",
                                     description="for S3-compatible servers (MinIO, Ceph)")
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    max_buffer_bytes: int = Field(16 << 20, ge=64 << 10, description="per recording, what "
                                  "is held while the object store is unreachable (then the "
                                  "recording stops and the session is sealed incomplete)")


NON_PUBLIC_NETWORKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8"]


class Settings(BaseSettings):
    """Every knob of vteller. Defaults are the embedded single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="VTELLER_", extra="forbid", frozen=True,
                                      env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    public_names: Annotated[list[str], NoDecode] = Field(default_factory=list, description="extra DNS names/IPs")
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        None, description="postgresql://user[:password]@host[:port]/db for PostgreSQL "
        "(several processes/nodes); unset: the embedded SQLite file under data_dir")
    redis_url: str | None = Field(
        None, description="redis://[:password@]host[:port][/db] for the shared routing "
        "store (queue and teller states of several processes); unset: in this process")
    redis_prefix: str = Field("{vteller}:", min_length=1, max_length=64,
                              description="key prefix in Redis (one per deployment)")
    standby: bool = Field(
        False, description="start as a standby of the node holding VTELLER_REDIS_PREFIX: "
        "wait (not listening) until its lease runs out, then take over the queue; "
        "customers resume here and keep their place")
    share_queue: bool = Field(
        False, description="every node on VTELLER_REDIS_PREFIX is active and they share "
        "one queue: a node offers customers to the tellers connected to it and a customer "
        "offered by another node is moved there (needs VTELLER_NODE_URL)")
    node_url: str | None = Field(
        None, pattern=r"^wss://[^/\s]+/\S*$", description="wss://host:port/ws where "
        "clients reach this node itself (not the balanced address): a customer moved to "
        "this node reconnects there")
    node_port: int | None = Field(
        None, ge=1, le=65535, description="also listen on this port, this node's own "
        "address (VTELLER_NODE_URL points at it); `serve --workers` sets it per worker")
    reuse_port: bool = Field(
        False, description="bind VTELLER_PORT with SO_REUSEPORT so several processes on "
        "one machine share it (the kernel spreads connections); `serve --workers` sets it")
    move_timeout_s: float = Field(
        8.0, gt=0, le=60, description="how long a node holds a teller for a customer it "
        "asked another node to move here; then the customer goes back to the queue")
    drain_s: float = Field(
        600.0, ge=0, le=86400, description="on SIGTERM: no new calls, calls in progress "
        "may finish for at most this long (0: end them at once); with a shared queue the "
        "waiting customers and idle tellers move to the node that takes over")
    requeue_after_node_failure: bool = Field(
        True, description="a customer whose call was on a node that stopped is queued "
        "again at its original place when it resumes on another node")
    node_lease_s: float = Field(
        10.0, ge=1, le=300, description="a node's lease in the database: renewed every "
        "third of it; a node silent this long is taken for dead and survivors seal its "
        "open audit sessions")
    certs_dir: Path = Path("certs")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    dev_mode: bool = False

    customer_token_algorithm: TokenAlgorithm = "EdDSA"
    customer_token_key_file: Path | None = Field(
        None, description="PEM public key (or HS256 secret file) of the bank backend"
    )
    customer_token_issuer: str = "bank-backend"
    customer_token_audience: str = "vteller"
    customer_token_max_ttl_s: int = Field(900, ge=30, le=86400)
    customer_token_leeway_s: int = Field(10, ge=0, le=120)

    staff_session_ttl_s: int = Field(8 * 3600, ge=60)
    login_max_failures: int = Field(5, ge=1)
    login_window_s: int = Field(300, ge=1)
    staff_recheck_s: float = Field(
        15.0, gt=0, le=600, description="how often a staff connection re-checks its login "
        "session (disabled or logged out elsewhere: the connection is closed)")

    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    hello_timeout_s: float = Field(10.0, gt=0, le=120, description="a WebSocket must say "
                                   "hello within this time")
    header_timeout_s: float = Field(10.0, gt=0, le=120, description="a connection's first "
                                    "request headers must arrive within this time")
    tls_handshake_timeout_s: float = Field(10.0, gt=0, le=120)
    keepalive_timeout_s: float = Field(15.0, gt=0, le=300)
    max_unauthenticated_per_address: int = Field(
        20, ge=1, description="WebSockets from one address that have not said hello yet")
    ice_blocked_networks: Annotated[list[str] | None, NoDecode] = Field(
        None, description="customer ICE candidates in these networks are dropped (the "
        "server never probes them). Default: private, loopback, link-local, multicast "
        "and reserved ranges; none in dev mode")
    ice_servers: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    heartbeat_s: float = Field(10.0, gt=0, le=300)
    reconnect_grace_s: float = Field(30.0, ge=0, le=600)
    ring_timeout_s: float = Field(20.0, gt=0, le=300)
    media_min_bitrate_bps: int = Field(
        500_000, ge=50_000, le=10_000_000, description="the bandwidth a receiver reports "
        "(REMB) lowers a party's video bitrate down to this, never below: the server's "
        "identity checks and the recorded evidence need that picture")
    monitoring: bool = Field(True, description="supervisors may listen to calls in "
                             "progress (listen-only, audited)")
    monitoring_tells_teller: bool = Field(True, description="the teller's console shows "
                                          "who is listening (the bank's policy)")
    max_message_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    messages_per_second: float = Field(100.0, gt=0)
    message_burst: int = Field(300, ge=1)
    media_forwarding: Literal["encoded", "transcode"] = Field(
        "encoded", description="encoded: forward packets as received; transcode: decode and "
        "re-encode (the benchmark baseline; several times the CPU)")
    native_forwarding: bool = Field(
        True, description="forward packets through the compiled part (media/_rtpfast.c) "
        "where the install built it; false: the pure-Python path (same behaviour, more CPU)")
    record_calls: bool = Field(
        False, description="record every forwarded track, encrypted (audit/FORMAT.md), "
        "under data_dir/recordings")
    kek_provider: Literal["local", "env"] = Field(
        "local", description="local: key ring in kek_dir; env: base64 key in VTELLER_KEK")
    kek_dir: Path = Field(Path("secrets"), description="key-encryption keys, outside data_dir")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="uvloop: libuv event loop (cheaper UDP I/O for media)")
    routing: RoutingPolicy = Field(default_factory=RoutingPolicy)
    assist: AssistPolicy = Field(default_factory=AssistPolicy)
    review: ReviewPolicy = Field(default_factory=ReviewPolicy)
    appointments: AppointmentPolicy = Field(default_factory=AppointmentPolicy)
    identity: IdentityPolicy = Field(default_factory=IdentityPolicy)
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    s3: S3Config = Field(default_factory=S3Config)
    bank: WebhookConfig = Field(default_factory=WebhookConfig)
    turn: TurnConfig = Field(default_factory=TurnConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _cluster_mode(self) -> Settings:
        if self.share_queue and not (self.redis_url and self.node_url):
            raise ValueError("VTELLER_SHARE_QUEUE needs VTELLER_REDIS_URL (the shared queue) "
                             "and VTELLER_NODE_URL (where moved customers reconnect)")
        if self.share_queue and self.standby:
            raise ValueError("VTELLER_SHARE_QUEUE and VTELLER_STANDBY exclude each other "
                             "(every node sharing a queue is active)")
        return self

    @field_validator("ice_blocked_networks")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        for net in value or []:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad one
        return value

    def blocked_ice_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        nets = self.ice_blocked_networks
        if nets is None:
            nets = [] if self.dev_mode else NON_PUBLIC_NETWORKS
        return [ipaddress.ip_network(n, strict=False) for n in nets]

    @field_validator("public_names", "allowed_origins", "ice_servers", "ice_blocked_networks",
                     mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    toml_file_path: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_file_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file_path))
        return tuple(sources)

    # derived paths -------------------------------------------------------
    @property
    def database_path(self) -> Path:
        return self.data_dir / "vteller.sqlite3"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def origin_hosts(self) -> list[str]:
        return ["localhost", "127.0.0.1", *self.public_names]

    def effective_origins(self) -> set[str]:
        """Origins the WebSocket accepts: configured ones, else this server's own names."""
        if self.allowed_origins:
            return set(self.allowed_origins)
        return {f"https://{h}:{self.port}" for h in self.origin_hosts} | (
            {f"https://{h}" for h in self.origin_hosts} if self.port == 443 else set()
        )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings or raise SettingsError naming each bad setting."""
    if config_file is not None and not Path(config_file).is_file():
        raise SettingsError(f"config file not found: {config_file}")

    class _Loaded(Settings):
        toml_file_path = Path(config_file) if config_file else None

    try:
        loaded = _Loaded(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            env = "__".join(str(p) for p in err["loc"]).upper() or "SETTINGS"
            lines.append(f"  VTELLER_{env} ({name}): {err['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {exc}") from None
    return Settings.model_validate(loaded.model_dump())
