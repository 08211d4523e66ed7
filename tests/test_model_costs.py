"""ropekit.model.costs: the per-token operator table against counts made another way
(torch's own FLOP counter on a real decode step, the model's parameters, the KV cache's bytes)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ropekit.model import ModelConfig, TinyLlama
from ropekit.model.costs import operator_costs

CONFIG = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=172, train_length=32)
PROJECTIONS = ("q, k, v projections (GQA)", "output projection", "SwiGLU gate and up projections",
               "SwiGLU down projection", "LM head")
ATTENTION = "attention q·K, softmax, ·V"


def total(rows, key, names=None):
    return sum(r["count"] * r[key] for r in rows if names is None or r["operator"] in names)


def test_matrix_product_flops_equal_torchs_count_on_a_real_decode_step():
    torch.manual_seed(0)
    model = TinyLlama(CONFIG).eval()
    context = 20
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, 256, (1, context - 1)), cache=cache)
        with FlopCounterMode(display=False) as counter:
            model(torch.randint(0, 256, (1, 1)), cache=cache)
    rows = operator_costs(CONFIG, context)
    matmul = total(rows, "flops", PROJECTIONS + (ATTENTION,))
    softmax = CONFIG.n_layers * 5 * CONFIG.n_heads * context  # in the table's attention row, not a matmul
    assert counter.get_total_flops() == matmul - softmax


def test_projection_flops_are_two_per_parameter_of_every_linear_layer():
    model = TinyLlama(CONFIG)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    rows = operator_costs(CONFIG, 1)
    assert total(rows, "flops", PROJECTIONS) == 2 * linear


def test_attention_bytes_grow_by_what_the_kv_cache_stores_per_token():
    torch.manual_seed(0)
    model = TinyLlama(CONFIG).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, 256, (1, 7)), cache=cache)
        before = cache.nbytes()
        model(torch.randint(0, 256, (1, 1)), cache=cache)
        after = cache.nbytes()
    step = total(operator_costs(CONFIG, 8, bytes_per_value=4), "bytes") - total(operator_costs(CONFIG, 7, bytes_per_value=4), "bytes")
    assert step == after - before


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="context"):
        operator_costs(CONFIG, 0)
    with pytest.raises(ValueError, match="bytes_per_value"):
        operator_costs(CONFIG, 4, bytes_per_value=3)
