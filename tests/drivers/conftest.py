from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.drivers.twin_sim import TOKEN_KEY, twin_sim  # noqa: F401
from tests.rig.fixtures import *  # noqa: F403

if TYPE_CHECKING:
    from tests.drivers.test_twin_fastpath import PtyLine


@pytest.fixture
def line() -> Iterator[PtyLine]:
    """A real pty: the driver's TwinLink on one end, the test scripting the reader on the other."""
    from tests.drivers.test_twin_fastpath import PtyLine as _PtyLine

    pl = _PtyLine()
    try:
        yield pl
    finally:
        pl.close()


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def fast(request: pytest.FixtureRequest) -> bool:
    """Run a Twin link test on the fast path and on the general path."""
    return bool(request.param)
