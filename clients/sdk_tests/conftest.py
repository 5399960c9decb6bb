from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sdk_tests.scripted import Scripted, scripted_server


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    async with scripted_server() as served:
        yield served
