"""Limits a hostile or broken client meets: rates per link and per message type, admission.

``bucket`` holds the token bucket every limit is made of; ``inbound`` the
per-link message and byte budget checked where frames are parsed;
``admission`` the per-address connection count and the accept rate.
"""

from .admission import Admission
from .bucket import TokenBucket
from .inbound import InboundLimiter, Rejected

__all__ = ["Admission", "InboundLimiter", "Rejected", "TokenBucket"]
