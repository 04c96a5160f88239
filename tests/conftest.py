"""Fixtures several test files share."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): a second thread gains nothing there, and when
    another process holds the other core of a 2-core machine, the threads' spin-waiting makes a
    step ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
