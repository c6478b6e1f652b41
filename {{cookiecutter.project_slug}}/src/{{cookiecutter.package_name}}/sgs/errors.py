"""Typed errors, so callers branch on the kind of failure rather than on text."""

from __future__ import annotations

from typing import Any


class SgsError(Exception):
    """Base of every error the framework raises on purpose."""


class ProtocolError(SgsError):
    """The peer sent bytes that break the wire contract.

    ``code`` is what goes into the ``Error`` message the peer receives, so
    clients in any language can branch on it.
    """

    code = "protocol_error"


class FrameTooLargeError(ProtocolError):
    """A TLV header announced a value longer than ``max_frame_size``."""

    code = "frame_too_large"

    def __init__(self, msg_id: int, length: int, limit: int) -> None:
        super().__init__(
            f"frame for message id {msg_id} announces {length} bytes, above the limit of {limit}"
        )
        self.msg_id = msg_id
        self.length = length
        self.limit = limit


class UnknownMessageError(ProtocolError):
    """No message is registered under the id, so the value cannot be decoded."""

    code = "unknown_message"

    def __init__(self, msg_id: int, codec: str) -> None:
        super().__init__(f"unknown message id {msg_id} (codec {codec})")
        self.msg_id = msg_id
        self.codec = codec


class DecodeError(ProtocolError):
    """The codec could not turn the value into the message registered under the id."""

    code = "decode_error"

    def __init__(self, msg_id: int, codec: str, reason: str) -> None:
        super().__init__(f"cannot decode message id {msg_id} with codec {codec}: {reason}")
        self.msg_id = msg_id
        self.codec = codec
        self.reason = reason


class HandlerError(SgsError):
    """Raised by a handler, a check or middleware to answer the request with an ``Error``.

    Unlike any other exception it is an expected outcome: it is not logged with
    a traceback and never closes the link.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code


class RemoteError(SgsError):
    """The server answered a client request with an ``Error`` message."""

    def __init__(self, error: Any) -> None:
        super().__init__(f"{error.code}: {error.message} (message id {error.msg_id})")
        self.error = error
        self.code: str = error.code
