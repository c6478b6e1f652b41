"""Baseline servers the framework is measured against, in the same run, on the same bytes.

- ``raw``: uvloop ``asyncio.Protocol`` that echoes each value under id+1 without
  decoding it: the ceiling for any Python server on this machine.
- ``json``: the same protocol server, but every request goes through
  ``json.loads`` and every reply through ``json.dumps``: the floor cost of a
  server that reads its messages, and the framework's main yardstick.
- ``streams``: what a Python developer writes by hand: ``asyncio.start_server``,
  ``readexactly``, json, ``write`` + ``drain`` per reply, default event loop.

Each module exposes ``async def start(host, port) -> asyncio.Server``.
"""
