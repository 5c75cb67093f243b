from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync.signing import secret_generate
from tests.sync.receiver_server import Receiver


@pytest.fixture
def secret() -> str:
    return secret_generate()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    server = Receiver(secrets=[secret]).start()
    yield server
    server.stop()
