"""Framework settings: one typed model, validated before anything binds a port.

The generated application subclasses :class:`ServerSettings` to give it an
environment prefix and its defaults; the framework only ever reads the fields
declared here, so a bad value is reported by pydantic, naming the field, at
start-up rather than deep inside a worker.
"""

from __future__ import annotations

import enum
import os
import re
import secrets
import socket
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PositiveInt, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProtocolName = Literal["json", "protobuf", "msgpack", "bson"]
LoopName = Literal["uvloop", "asyncio"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ErrorPolicy = Literal["reply", "close"]
OverflowPolicy = Literal["close", "drop"]
StoreSync = Literal["write_behind", "always"]
LogFormat = Literal["text", "json"]

MAX_FRAME_CEILING = 16 * 1024 * 1024

CLUSTER_SCHEMES = ("redis", "rediss")
STORE_SCHEMES = ("memory", "sqlite", "redis", "rediss")
NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_node_id() -> str:
    """hostname-pid-random: unique per process, readable in logs and Redis keys."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40].strip("-.") or "node"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: safe for logs and print-config."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port: mask by shape, the error names the port
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url) if "@" in url else url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _check_redis_url(url: str, field: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError as exc:
        raise ValueError(f"{field}: bad port in {mask_url(url)!r}") from exc
    if not parts.hostname:
        raise ValueError(f"{field}: {mask_url(url)!r} names no host (redis://host:port/db)")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ValueError(f"{field}: the database in {mask_url(url)!r} must be a number")


class ResourceModel(str, enum.Enum):
    """The four go-sgs resource models; the number is the go-sgs model number."""

    per_link = "per_link"
    shared_logic = "shared_logic"
    shared_logic_send = "shared_logic_send"
    shared_all = "shared_all"

    @property
    def number(self) -> int:
        return list(ResourceModel).index(self) + 1

    @classmethod
    def parse(cls, value: Any) -> ResourceModel:
        """Accept the name, the go-sgs number (1-4) or an enum member."""
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        if text.isdigit() and 1 <= int(text) <= len(cls):
            return list(cls)[int(text) - 1]
        return cls(text)


class ServerSettings(BaseSettings):
    """Every knob the framework reads. Subclasses add an env prefix and sources."""

    model_config = SettingsConfigDict(env_prefix="SGS_", extra="ignore", validate_default=True)

    #: Generated apps set this: ``ws_port`` left unset is the TCP port + 1 (0 with port 0).
    ws_port_follows_port: ClassVar[bool] = False

    host: str = Field("0.0.0.0", description="Address to listen on.")
    port: int = Field(6666, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    protocol: ProtocolName = Field("json", description="Codec for message values.")
    resource_model: ResourceModel = Field(
        ResourceModel.shared_all, description="go-sgs resource model (name or 1-4)."
    )
    logic_workers: PositiveInt = Field(4, description="Logic workers in shared models.")
    send_workers: PositiveInt = Field(
        2, description="Writers in model shared_logic_send/shared_all."
    )
    max_frame_size: int = Field(
        64 * 1024, ge=0, le=MAX_FRAME_CEILING, description="Largest accepted TLV value."
    )
    max_connections: PositiveInt = Field(10_000, description="Open links beyond this are refused.")
    idle_timeout: float = Field(
        60.0, ge=0, description="Seconds without a frame before a link is closed; 0 disables."
    )
    drain_timeout: float = Field(5.0, ge=0, description="Seconds a graceful stop waits to flush.")
    resume_window: float = Field(
        30.0,
        ge=0,
        description="Seconds a dropped player is held for ResumeReq; 0 turns resumption off.",
    )
    resume_buffer: PositiveInt = Field(
        512, description="Frames a resumable link keeps for replay (its outbound ring)."
    )
    resume_buffer_bytes: PositiveInt = Field(
        256 * 1024, description="Bytes a resumable link keeps for replay at most."
    )
    resume_secret: str = Field(
        "", description="HMAC key of resume tokens, the same on every node; empty: random."
    )
    send_buffer_size: PositiveInt = Field(
        1024 * 1024, description="Bytes a link may have waiting to be sent."
    )
    send_overflow: OverflowPolicy = Field(
        "close", description="What a full send side does: close the link or drop the message."
    )
    inbound_limit: PositiveInt = Field(
        256, description="Queued inbound messages per link before its reading pauses."
    )
    protocol_error_policy: ErrorPolicy = Field(
        "reply", description="Unknown id / undecodable value: reply with Error, or close."
    )
    handler_error_policy: ErrorPolicy = Field(
        "reply", description="Handler raised: reply with Error and keep the link, or close."
    )
    log_level: LogLevel = Field("INFO", description="Root log level.")
    log_format: LogFormat = Field(
        "text", description="text: one readable line per record; json: one JSON object a line."
    )
    loop: LoopName = Field(
        "uvloop", description="Event loop; falls back to asyncio without uvloop."
    )
    backlog: PositiveInt = Field(1024, description="listen() backlog.")

    # -- transport security -------------------------------------------------
    tls_cert_file: str = Field(
        "", description="PEM certificate chain; with tls_key_file, the game port speaks TLS."
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file.")
    tls_client_ca_file: str = Field(
        "", description="PEM CA bundle; when set, clients must present a certificate it signed."
    )
    tls_handshake_timeout: float = Field(
        10.0, gt=0, le=300.0, description="Seconds a TLS handshake may take before the close."
    )

    # -- limits against floods, scripts and slow clients --------------------
    rate_limit_messages: float = Field(
        1000.0, ge=0, description="Messages a second per link (token bucket); 0 disables."
    )
    rate_limit_messages_burst: PositiveInt = Field(
        2000, description="Messages a link may send at once above rate_limit_messages."
    )
    rate_limit_bytes: int = Field(
        1024 * 1024, ge=0, description="Inbound bytes a second per link; 0 disables."
    )
    rate_limit_bytes_burst: PositiveInt = Field(
        4 * 1024 * 1024,
        description="Bytes a link may send at once; at least max_frame_size + 8.",
    )
    rate_limit_policy: ErrorPolicy = Field(
        "reply",
        description="Over a rate limit: reply Error(rate_limited) naming the message id "
        "and pause reading until the budget refills, or close the link.",
    )
    max_connections_per_ip: int = Field(
        256, ge=0, description="Open links from one IP address; 0 disables."
    )
    accept_rate: float = Field(
        1000.0, ge=0, description="New connections accepted a second (token bucket); 0 disables."
    )
    accept_burst: PositiveInt = Field(2000, description="Connections accepted at once.")
    frame_timeout: float = Field(
        10.0, ge=0, description="Seconds a started frame may take to arrive whole; 0 disables."
    )

    # -- behind a load balancer: the client's real address ------------------
    proxy_protocol: bool = Field(
        False,
        description="Every connection to the game and WebSocket ports starts with a PROXY "
        "protocol header (v1 or v2) from one of trusted_proxies; others are closed.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        examples=["10.0.0.0/8"],
        description="Networks (CIDRs) of the load balancers whose PROXY header or "
        'X-Forwarded-For names the client, e.g. ["10.0.0.0/8"].',
    )

    # -- operations: /metrics, /healthz, /readyz over HTTP ------------------
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="HTTP port of /metrics, /healthz and /readyz; 0 disables them.",
    )
    metrics_host: str = Field(
        "", description="Address of the metrics port; empty: the same as host."
    )

    # -- cluster (several processes or hosts over Redis) --------------------
    cluster_url: str = Field(
        "",
        description="Empty: one node, no broker. redis://[:password@]host:port/db "
        "(or rediss:// for TLS): a cluster node.",
    )
    node_id: str = Field(
        default_factory=default_node_id,
        description="This process's name in the cluster; unique per process.",
    )
    cluster_prefix: str = Field(
        "sgs",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$",
        description="Prefix of every Redis key and channel the cluster uses.",
    )
    cluster_lease: float = Field(
        5.0, ge=1.0, le=300.0, description="Seconds a node counts as alive without a heartbeat."
    )
    cluster_timeout: float = Field(
        2.0,
        gt=0,
        le=60.0,
        description="Seconds a handler waits for the broker before going local "
        "(a login is refused instead: its bind must be confirmed).",
    )
    cluster_publish_queue: PositiveInt = Field(
        10_000, le=1_000_000, description="Envelopes waiting for the broker before drops."
    )
    # -- rooms (sgs/rooms) ----------------------------------------------------
    seat_reservation_timeout: float = Field(
        15.0,
        gt=0,
        le=3600.0,
        description="Seconds a seat reserved by matchmaking stays valid before it is freed.",
    )
    empty_grace: float = Field(
        2.0,
        ge=0,
        le=3600.0,
        description="Seconds an auto_dispose room stays without members before it is disposed "
        "(a room type may set its own).",
    )
    workers: PositiveInt = Field(
        1, le=256, description="Server processes on this host (SO_REUSEPORT); >1 needs cluster_url."
    )
    worker_hang_timeout: float = Field(
        5.0,
        ge=0.5,
        le=300.0,
        description="serve --workers: seconds without a heartbeat from a worker's event loop "
        "before the supervisor kills and replaces it as hung.",
    )
    reuse_port: bool = Field(
        False,
        description="Bind with SO_REUSEPORT (Linux) so processes share the port; "
        "serve --workers sets it for its workers.",
    )

    # -- WebSocket (browser players) ----------------------------------------
    ws_port: int = Field(
        0, ge=0, le=65535, description="WebSocket port beside the TCP port; 0 disables."
    )
    ws_path: str = Field("/", description="Path of the WebSocket endpoint.")
    ws_allowed_origins: list[str] = Field(
        default_factory=list,
        examples=["https://game.example.com"],
        description="Origins a browser handshake may come from (403 otherwise); empty = any.",
    )
    ws_handshake_timeout: float = Field(
        5.0, gt=0, le=300.0, description="Seconds a WebSocket handshake may take."
    )
    ws_ping_interval: float = Field(
        20.0,
        ge=0,
        le=3600.0,
        description="Seconds of silence before the server pings a WebSocket peer "
        "(closed if no pong within as long); 0 disables.",
    )
    ws_static_dir: str = Field(
        "",
        description="Directory whose files plain HTTP GETs on the WebSocket port get "
        "(the demo page); empty serves none.",
    )

    # -- player state store -------------------------------------------------
    store_url: str = Field(
        "memory://",
        description="memory://, sqlite:///path/to/file.db, or redis://host:port/db. "
        "With cluster_url set and no store_url given, the cluster's Redis.",
    )
    store_flush_interval: float = Field(
        1.0, gt=0, le=3600.0, description="Seconds between write-behind flushes."
    )
    store_sync: StoreSync = Field(
        "write_behind",
        description="write_behind: flush in batches; always: durable before the reply leaves.",
    )
    store_max_dirty: PositiveInt = Field(
        100_000,
        description="Unflushed player states kept in memory; past it new logins are refused.",
    )

    # -- Agones (dedicated game server fleets on Kubernetes) -----------------
    agones: bool = Field(
        False,
        description="Talk to the Agones SDK sidecar: Ready once listening, Health pings, "
        "Shutdown after the graceful drain.",
    )
    agones_sdk_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="REST port of the Agones SDK sidecar; 0: AGONES_SDK_HTTP_PORT "
        "(Agones sets it), else 9358.",
    )
    agones_health_interval: float = Field(
        2.0,
        gt=0,
        le=300.0,
        description="Seconds between Health pings; keep it below the GameServer's "
        "health periodSeconds.",
    )

    @field_validator("resource_model", mode="before")
    @classmethod
    def _resource_model_number(cls, value: Any) -> Any:
        try:
            return ResourceModel.parse(value)
        except ValueError:
            return value  # let pydantic report the allowed values

    @field_validator("node_id")
    @classmethod
    def _node_id_shape(cls, value: str) -> str:
        if not NODE_ID_PATTERN.match(value):
            raise ValueError(
                "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("cluster_url")
    @classmethod
    def _cluster_url_shape(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        scheme = urlsplit(value).scheme
        if scheme not in CLUSTER_SCHEMES:
            raise ValueError(
                f"expected redis://[:password@]host:port/db or rediss://..., got {mask_url(value)!r}"
            )
        _check_redis_url(value, "cluster_url")
        return value

    @field_validator("store_url")
    @classmethod
    def _store_url_shape(cls, value: str) -> str:
        value = value.strip()
        scheme = urlsplit(value).scheme
        if scheme not in STORE_SCHEMES:
            raise ValueError(
                "expected memory://, sqlite:///path/to/file.db or redis://host:port/db, "
                f"got {mask_url(value)!r}"
            )
        if scheme == "sqlite" and not sqlite_path(value):
            raise ValueError(f"{value!r} names no file (sqlite:///var/game.db)")
        if scheme.startswith("redis"):
            _check_redis_url(value, "store_url")
        return value

    @model_validator(mode="after")
    def _cluster_defaults(self) -> ServerSettings:
        if self.cluster_url and "store_url" not in self.model_fields_set:
            self.store_url = self.cluster_url
        if self.workers > 1 and not self.cluster_url:
            raise ValueError(
                f"workers = {self.workers} needs cluster_url: each worker process is a cluster "
                "node, and nodes share rooms and logins through Redis (set cluster_url, "
                "or workers = 1)"
            )
        return self

    @model_validator(mode="after")
    def _agones_one_process(self) -> ServerSettings:
        if self.agones and self.workers > 1:
            raise ValueError(
                f"agones = true with workers = {self.workers}: a GameServer pod is one server "
                "process (each worker would tell the sidecar Ready and Shutdown on its own); "
                "set workers = 1 and scale with the Fleet's replicas"
            )
        return self

    @model_validator(mode="after")
    def _limits_fit(self) -> ServerSettings:
        if self.rate_limit_bytes and self.rate_limit_bytes_burst < self.max_frame_size + 8:
            raise ValueError(
                f"rate_limit_bytes_burst = {self.rate_limit_bytes_burst} is below "
                f"max_frame_size + 8 = {self.max_frame_size + 8}: the largest frame "
                "could never pass (raise rate_limit_bytes_burst, or rate_limit_bytes = 0)"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"{cidr!r} is not a network; write CIDRs such as 10.0.0.0/8 or fd00::/8"
                ) from None
        return value

    @model_validator(mode="after")
    def _proxy_protocol_needs_proxies(self) -> ServerSettings:
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError(
                "proxy_protocol = true with no trusted_proxies would refuse every connection; "
                'list the load balancers\' networks in trusted_proxies (e.g. ["10.0.0.0/8"])'
            )
        if self.proxy_protocol and (self.tls_cert_file or self.tls_key_file):
            raise ValueError(
                "proxy_protocol = true with tls_cert_file: the PROXY header comes before the "
                "TLS handshake, which this server does not read; terminate TLS at the load "
                "balancer, or turn proxy_protocol off"
            )
        return self

    @model_validator(mode="after")
    def _tls_loads(self) -> ServerSettings:
        if self.tls_cert_file or self.tls_key_file or self.tls_client_ca_file:
            from .tls import server_context  # only a TLS server pays for the import

            server_context(self)  # names the setting whose file is missing or bad
        return self

    @field_validator("ws_path")
    @classmethod
    def _ws_path_shape(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?# "):
            raise ValueError(f"expected a path such as / or /ws, got {value!r}")
        return value

    @model_validator(mode="after")
    def _ws_port_free(self) -> ServerSettings:
        if self.ws_port_follows_port and "ws_port" not in self.model_fields_set:
            self.ws_port = self.port + 1 if 0 < self.port < 65535 else 0
        if self.ws_port and self.ws_port == self.port:
            raise ValueError(f"ws_port = {self.ws_port} is the TCP port; use another (or 0)")
        return self

    @model_validator(mode="after")
    def _metrics_port_free(self) -> ServerSettings:
        if not self.metrics_port:
            return self
        # serve --workers N: worker K serves metrics on metrics_port + K - 1.
        ports = range(self.metrics_port, self.metrics_port + self.workers)
        same_host = (self.metrics_host or self.host) == self.host
        game_ports = {"the game port": self.port, "ws_port": self.ws_port}
        for name, taken in game_ports.items():
            if taken and taken in ports and same_host:
                raise ValueError(
                    f"metrics_port = {self.metrics_port} (one port per worker from there) takes "
                    f"{name} {taken}; give metrics_port another port (or 0 to disable it)"
                )
        if ports[-1] > 65535:
            raise ValueError(
                f"metrics_port = {self.metrics_port} with workers = {self.workers} needs ports "
                f"up to {ports[-1]}; choose a lower metrics_port"
            )
        return self

    @property
    def metrics_address(self) -> tuple[str, int]:
        """Where /metrics, /healthz and /readyz listen (port 0: nowhere)."""
        return (self.metrics_host or self.host, self.metrics_port)

    @field_serializer("cluster_url", "store_url")
    def _masked(self, value: str) -> str:
        return mask_url(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    return rest[1:] if rest.startswith("/") else rest
