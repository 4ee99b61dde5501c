import pytest
import torch

from model import create_model, get_config, load_schema


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model(get_config("tiny"), load_schema("mars")).eval()


@pytest.fixture
def clips():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, 4, 3, 32, 32, generator=generator)
