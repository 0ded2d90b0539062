"""Fixtures shared by the kernel tests."""
import pytest

import fastbp


@pytest.fixture
def restore_threads():
    """The test may change fastbp's team size: put it back afterwards."""
    n = fastbp.get_num_threads()
    yield
    fastbp.set_num_threads(n)
