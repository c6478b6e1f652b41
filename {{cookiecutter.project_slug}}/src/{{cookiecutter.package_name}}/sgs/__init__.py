"""sgs: a Python (asyncio + uvloop) port of the go-sgs game server design.

Vendored into this repository on purpose: read it, change it, it is yours.
"""

from .bindings import Bindings, Player
from .builtins import ERROR_ID, Error, PingReq, PongResp
from .client import Client
from .cluster import Cluster, ClusterStats, LocalCluster
from .connector import FrameDecoder, encode_frame
from .context import Context
from .deadlines import Deadlines
from .errors import (
    DecodeError,
    FrameTooLargeError,
    HandlerError,
    ProtocolError,
    RemoteError,
    SgsError,
    UnknownMessageError,
)
from .framework import Server, Stats, Timer, new_event_loop, run_server
from .group import Group
from .link import CloseReason, Link, LinkState
from .message import Catalog, Message, default_catalog
from .middleware import Check, Middleware, logging_middleware, timing_middleware
from .outcomes import Outcomes, Reason, close_reason
from .protocol import PROTOCOLS, Codec, get_codec, render_proto
from .router import Router
from .settings import ResourceModel, ServerSettings

__all__ = [
    "ERROR_ID",
    "PROTOCOLS",
    "Bindings",
    "Catalog",
    "Check",
    "Client",
    "Cluster",
    "ClusterStats",
    "CloseReason",
    "Codec",
    "Context",
    "Deadlines",
    "DecodeError",
    "Error",
    "FrameDecoder",
    "FrameTooLargeError",
    "Group",
    "HandlerError",
    "Link",
    "LinkState",
    "LocalCluster",
    "Message",
    "Middleware",
    "Outcomes",
    "PingReq",
    "Player",
    "PongResp",
    "ProtocolError",
    "Reason",
    "RemoteError",
    "ResourceModel",
    "Router",
    "Server",
    "ServerSettings",
    "SgsError",
    "Stats",
    "Timer",
    "UnknownMessageError",
    "close_reason",
    "default_catalog",
    "encode_frame",
    "get_codec",
    "logging_middleware",
    "new_event_loop",
    "render_proto",
    "run_server",
    "timing_middleware",
]
