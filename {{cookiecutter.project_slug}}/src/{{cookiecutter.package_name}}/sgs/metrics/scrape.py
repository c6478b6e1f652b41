"""Read an operations endpoint over HTTP with the standard library (slim images have no curl)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request


class Unreachable(Exception):
    """Nothing answered at the URL (refused, timed out, not HTTP); the text says which."""


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of a GET; a 4xx/5xx answer is an answer, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        raise Unreachable(str(exc.reason)) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, a bad URL
        raise Unreachable(str(exc) or type(exc).__name__) from exc
