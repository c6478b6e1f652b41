"""Framework settings: one typed model, validated before anything binds a port.

The generated application subclasses :class:`ServerSettings` to give it an
environment prefix and its defaults; the framework only ever reads the fields
declared here, so a bad value is reported by pydantic, naming the field, at
start-up rather than deep inside a worker.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProtocolName = Literal["json", "protobuf", "msgpack", "bson"]
LoopName = Literal["uvloop", "asyncio"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ErrorPolicy = Literal["reply", "close"]
OverflowPolicy = Literal["close", "drop"]

MAX_FRAME_CEILING = 16 * 1024 * 1024


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
    loop: LoopName = Field(
        "uvloop", description="Event loop; falls back to asyncio without uvloop."
    )
    backlog: PositiveInt = Field(1024, description="listen() backlog.")

    @field_validator("resource_model", mode="before")
    @classmethod
    def _resource_model_number(cls, value: Any) -> Any:
        try:
            return ResourceModel.parse(value)
        except ValueError:
            return value  # let pydantic report the allowed values

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
