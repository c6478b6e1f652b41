"""Cluster: groups, logins and pushes that span server processes and hosts.

``make_cluster(server)`` picks the implementation from ``cluster_url``: empty
means :class:`LocalCluster` (one node, no broker), ``redis://`` or
``rediss://`` means :class:`~.redis.RedisCluster` (imported only then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import BindRefused, BindResult, Cluster, ClusterStats, EpochClock
from .local import LocalCluster

if TYPE_CHECKING:
    from ..framework import Server

__all__ = [
    "BindRefused",
    "BindResult",
    "Cluster",
    "ClusterStats",
    "EpochClock",
    "LocalCluster",
    "make_cluster",
]


def make_cluster(server: Server) -> Cluster:
    if not server.settings.cluster_url:
        return LocalCluster(server)
    from .redis import RedisCluster

    return RedisCluster(server)
