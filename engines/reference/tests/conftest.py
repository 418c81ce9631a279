import functools

import pytest
import torch

from pixelllm_ref.golden import GOLDEN_CASES, load_golden

torch.set_num_threads(1)  # the CI machine has 2 cores; keep tests polite and deterministic


@functools.lru_cache(maxsize=None)
def _golden(name):
    return load_golden(name)


@pytest.fixture(params=GOLDEN_CASES)
def golden(request):
    return _golden(request.param)
