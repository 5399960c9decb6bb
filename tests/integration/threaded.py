"""A platform on its own event loop in a thread, for synchronous tests
(hypothesis drives plain functions, not coroutines)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from server.app import Platform
from server.config import Settings


@contextmanager
def platform_in_thread(settings: Settings) -> Iterator[Platform]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    platform = Platform(settings)
    try:
        asyncio.run_coroutine_threadsafe(platform.start(), loop).result(60)
        yield platform
    finally:
        asyncio.run_coroutine_threadsafe(platform.stop(grace=1), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
