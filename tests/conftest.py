"""Shared fixtures."""

import pytest
from helpers import make_spike_dataset


@pytest.fixture
def spike_dataset():
    return make_spike_dataset
