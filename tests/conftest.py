import os

import pytest
import torch

# Two cores: keep intra-op threads from oversubscribing when pytest runs.
torch.set_num_threads(min(2, os.cpu_count() or 1))

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
