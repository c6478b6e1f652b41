"""A small HTTP/1.1 client over asyncio streams, enough for the SDK's REST gateway.

The gateway is on localhost in the same pod, so each call opens its own
connection (``Connection: close``): no pool to go stale when the sidecar
restarts. Bodies come as ``Content-Length``, chunked, or up to EOF; the watch
endpoint streams newline-separated JSON in one chunked response, which
:func:`stream_lines` yields line by line. Every read is bounded in size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


class SdkError(Exception):
    """The sidecar could not be reached, or answered with an error status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _request_bytes(method: str, host: str, port: int, path: str, body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise SdkError("response head too large") from exc
    except asyncio.IncompleteReadError as exc:
        raise SdkError("connection closed before a response") from exc
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise SdkError(f"not an HTTP response: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The data of a chunked body, chunk by chunk, until the last (empty) chunk."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise SdkError("connection closed inside a chunked body")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise SdkError(f"bad chunk size {size_line[:40]!r}") from exc
        if size > MAX_BODY:
            raise SdkError(f"chunk of {size} bytes is too large")
        if size == 0:
            return
        data = await reader.readexactly(size + 2)  # the chunk and its CRLF
        yield data[:-2]


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        async for chunk in _chunks(reader):
            body += chunk
            if len(body) > MAX_BODY:
                raise SdkError("response body too large")
        return bytes(body)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise SdkError(f"bad Content-Length {length!r}")
        return await reader.readexactly(int(length))
    body = await reader.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise SdkError("response body too large")
    return body


async def _open(
    host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_HEAD), timeout)
    except (OSError, TimeoutError) as exc:
        raise SdkError(
            f"cannot reach the SDK sidecar at {host}:{port}: {exc or 'timeout'}"
        ) from exc


async def request(
    host: str, port: int, method: str, path: str, body: bytes | None, timeout: float
) -> bytes:
    """One call; the response body, or :class:`SdkError` (unreachable, timeout, status >= 300)."""
    reader, writer = await _open(host, port, timeout)
    try:
        writer.write(_request_bytes(method, host, port, path, body))
        async with asyncio.timeout(timeout):
            status, headers = await _read_head(reader)
            data = await _read_body(reader, headers)
    except TimeoutError as exc:
        raise SdkError(f"{method} {path}: no answer within {timeout:g}s") from exc
    except (OSError, asyncio.IncompleteReadError) as exc:
        raise SdkError(f"{method} {path}: {exc}") from exc
    finally:
        writer.close()
    if not 200 <= status < 300:
        text = data[:200].decode("utf-8", "replace").strip()
        raise SdkError(f"{method} {path}: HTTP {status}: {text}", status)
    return data


async def stream_lines(host: str, port: int, path: str, timeout: float) -> AsyncIterator[bytes]:
    """GET ``path`` and yield each non-empty line of its (long-lived) body as it arrives.

    ``timeout`` bounds the connect and the response head, not the stream: a
    watch may stay silent for as long as nothing changes.
    """
    reader, writer = await _open(host, port, timeout)
    try:
        writer.write(_request_bytes("GET", host, port, path, None))
        try:
            async with asyncio.timeout(timeout):
                status, headers = await _read_head(reader)
        except TimeoutError as exc:
            raise SdkError(f"GET {path}: no answer within {timeout:g}s") from exc
        if not 200 <= status < 300:
            raise SdkError(f"GET {path}: HTTP {status}", status)
        pending = bytearray()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        source = _chunks(reader) if chunked else _raw(reader)
        try:
            async for data in source:
                pending += data
                while (end := pending.find(b"\n")) >= 0:
                    line = bytes(pending[:end]).strip()
                    del pending[: end + 1]
                    if line:
                        yield line
                if len(pending) > MAX_BODY:
                    raise SdkError(f"GET {path}: a line longer than {MAX_BODY} bytes")
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise SdkError(f"GET {path}: {exc}") from exc
        if pending.strip():
            yield bytes(pending).strip()
    finally:
        writer.close()


async def _raw(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await reader.read(65536):
        yield data
