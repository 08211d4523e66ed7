"""One call puts ropekit into a loaded Hugging Face model: kernels, ReRoPE, log-n, schedules.

    import ropekit.integrations.transformers as rk
    rk.patch(model, kernel=True)                         # RoPE through ropekit.kernels.apply_rope_qk
    rk.patch(model, window=512, leaky_factor=None)       # ReRoPE attention, keys cached unrotated
    rk.patch(model, scaling="yarn", factor=4.0)          # any ropekit.rope_frequencies schedule
    rk.unpatch(model)                                    # the model as it was

What changes. Every attention layer of the model gets its own forward (the model's class
and every other model are untouched, unlike patches of the modeling module), written in
ropekit's tensor order ``(batch, seq, heads, head_dim)``:

* RoPE (the default): q and k are rotated by :func:`ropekit.kernels.apply_rope_qk` (CUDA)
  or its twin :func:`ropekit.reference.apply_rope_qk`, from the per-token cos/sin table
  the model's rotary embedding made; then the model's own cache and attention function run
  as before, so every attention backend (eager, SDPA, flash) keeps working.
* ReRoPE / Leaky ReRoPE / log-n (``window=`` or ``log_n_train_length=``): keys go into the
  model's cache *before* rotation, the prompt runs through
  :func:`ropekit.attention.rerope_attention` (the fused Triton kernel on CUDA with
  ``kernel=True``), and each generated token through :func:`ropekit.decode.rerope_decode_step`:
  one product per cached key, never a re-rotation of the cache (the ReRoPE post's decode).
  Padding is read from the attention mask: left-padded batches generate as each row would
  alone. Log-n alone is ReRoPE with a window longer than any input.
* ``scaling=``: the rotary embedding's cos/sin come from :func:`ropekit.rope_frequencies`
  with that schedule (and its attention factor) and :func:`ropekit.rope_cos_sin`;
  ``"dynamic"`` recomputes the base for the current length at every call, as Hugging
  Face's dynamic NTK does (cached keys keep the base they were rotated with).

Supported: the Llama family's attention (q/k/v/o projections, half-layout RoPE): Llama,
Mistral, Qwen2, Qwen3 (with its q/k norms) are tested; models with another attention layout
(fused qkv, partial rotary with interleaved pairs, MLA) are refused with a clear error.
Lesson 06 runs the tiny LLaMA through ``model.generate`` with ReRoPE this way.
"""

from __future__ import annotations

import sys
import types
import weakref
from dataclasses import dataclass

import torch

from ..attention import rerope_attention as rerope_attention_reference
from ..checks import check_leaky_factor, check_log_n_train_length, check_window
from ..decode import rerope_decode_step
from ..frequencies import SCALINGS, rope_frequencies
from ..reference import apply_rope_qk as apply_rope_qk_reference
from ..reference import rope_cos_sin

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

# model -> what patch() replaced, so that unpatch() can put it back
_PATCHED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class PatchPlan:
    """What a patched attention layer does (one per model, shared by its layers)."""

    kernel: bool
    window: int | None = None  # ReRoPE's w; None without ReRoPE
    leaky_factor: float | None = None
    log_n_train_length: int | None = None
    inv_freq: torch.Tensor | None = None  # the rotary embedding's, for ReRoPE

    @property
    def rerope(self) -> bool:
        return self.window is not None or self.log_n_train_length is not None


def patch(model, kernel=None, *, window=None, leaky_factor=None, log_n_train_length=None, scaling=None,
          **scaling_params):
    """Swap RoPE, attention and/or frequencies of a loaded Llama-family model for ropekit's.

    Args:
        model: a ``transformers`` causal LM or base model (``LlamaForCausalLM``, ...).
        kernel: rotate q and k with the Triton kernel (``ropekit.kernels``) instead of the
            plain-torch twin; default True when the model is on CUDA. With ReRoPE, the
            prompt also goes through the fused ReRoPE kernel.
        window: ReRoPE's window w (relative positions beyond w are clamped to w).
        leaky_factor: Leaky ReRoPE's k > 1 (slope 1/k beyond the window); needs ``window``.
        log_n_train_length: the training length L of log-n query scaling (Su's max(1, log_L n)).
        scaling, scaling_params: a :func:`ropekit.rope_frequencies` schedule and its
            parameters (``factor``, ``original_max_position_embeddings``, ...), replacing the
            model's frequencies; ``original_max_position_embeddings`` defaults to the
            model's ``max_position_embeddings``.

    Returns:
        The model, patched in place. Patching a patched model first undoes the old patch.
    """
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model must be one of the model types {SUPPORTED_MODEL_TYPES} (the Llama family's "
                         f"attention), got {getattr(config, 'model_type', type(model).__name__)!r}")
    if leaky_factor is not None and window is None:
        raise ValueError("leaky_factor needs window (Leaky ReRoPE's slope applies beyond the window)")
    if window is not None:
        check_window(window)
    leaky_factor = check_leaky_factor(leaky_factor)
    check_log_n_train_length(log_n_train_length)
    if scaling is not None and scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    unpatch(model)
    device = next(model.parameters()).device
    kernel = device.type == "cuda" if kernel is None else bool(kernel)
    rotary = _rotary_embedding(model)
    saved = {"rotary_forward": rotary.__dict__.get("forward"), "layers": []}
    if scaling is not None:
        rotary.forward = types.MethodType(_schedule_forward(config, scaling, scaling_params), rotary)
    inv_freq = None
    if window is not None or log_n_train_length is not None:
        inv_freq, attention_factor = _schedule(config, scaling, scaling_params, seq_len=None)
        if attention_factor != 1.0:
            raise ValueError(f"ReRoPE has no attention factor; scaling={scaling!r} has {attention_factor:g}")
    plan = PatchPlan(kernel, window, leaky_factor, log_n_train_length, inv_freq)
    for layer in _attention_layers(model):
        saved["layers"].append((layer, layer.__dict__.get("forward")))
        layer.forward = types.MethodType(_attention_forward, layer)
        layer.ropekit_plan = plan
    _PATCHED[model] = saved
    return model


def unpatch(model):
    """Undo :func:`patch`: the model's own attention and rotary embedding again."""
    saved = _PATCHED.pop(model, None)
    if saved is None:
        return model
    for layer, forward in saved["layers"]:
        del layer.forward
        del layer.ropekit_plan
        if forward is not None:
            layer.forward = forward
    rotary = _rotary_embedding(model)
    rotary.__dict__.pop("forward", None)
    if saved["rotary_forward"] is not None:
        rotary.forward = saved["rotary_forward"]
    return model


# --- the frequencies -------------------------------------------------------------------------


def _schedule(config, scaling, params, seq_len):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    base = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    params = dict(params)
    if scaling in ("dynamic", "yarn", "llama3", "longrope") and "original_max_position_embeddings" not in params:
        params["original_max_position_embeddings"] = config.max_position_embeddings
    if scaling == "dynamic":
        params["seq_len"] = seq_len or params["original_max_position_embeddings"]
    return rope_frequencies(head_dim, base, scaling, **params)


def _schedule_forward(config, scaling, params):
    """A rotary-embedding forward whose cos/sin are ropekit's, in Hugging Face's format."""
    fixed = None if scaling == "dynamic" else _schedule(config, scaling, params, None)

    def forward(rotary, x, position_ids):
        if fixed is None:  # dynamic NTK: the base for the longest position seen (a host sync)
            inv_freq, factor = _schedule(config, scaling, params, int(position_ids.max()) + 1)
        else:
            inv_freq, factor = fixed
        cos, sin = rope_cos_sin(position_ids, inv_freq.to(x.device), factor)
        # Hugging Face's tables repeat the pairs' angles for both halves of head_dim
        return torch.cat((cos, cos), -1).to(x.dtype), torch.cat((sin, sin), -1).to(x.dtype)

    return forward


# --- the attention layer -----------------------------------------------------------------------


def _attention_forward(attn, hidden_states, position_embeddings=None, attention_mask=None, cache=None,
                       past_key_values=None, **kwargs):
    """A Llama-family attention forward in ropekit's order, RoPE or ReRoPE per ``attn.ropekit_plan``."""
    plan = attn.ropekit_plan
    cache = cache if cache is not None else past_key_values
    shape = (*hidden_states.shape[:-1], -1, attn.head_dim)  # (batch, seq, heads, head_dim)
    q, k = attn.q_proj(hidden_states).view(shape), attn.k_proj(hidden_states).view(shape)
    v = attn.v_proj(hidden_states).view(shape)
    if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before RoPE
        q, k = attn.q_norm(q), attn.k_norm(k)
    if plan.rerope:
        out = _rerope(attn, plan, q, k, v, attention_mask, cache)
        weights = None
    else:
        cos, sin = position_embeddings  # (batch, seq, rotary_dim): both halves repeat the angles
        half = cos.shape[-1] // 2
        rotate = _kernel_rope() if plan.kernel else apply_rope_qk_reference
        q, k = rotate(q, k, cos[..., :half], sin[..., :half], "half")
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # the model's own order from here
        if cache is not None:
            k, v = cache.update(k, v, attn.layer_idx)
        out, weights = _attention_function(attn)(
            attn, q, k, v, attention_mask, dropout=0.0 if not attn.training else attn.attention_dropout,
            scaling=attn.scaling, sliding_window=getattr(attn, "sliding_window", None), **kwargs)
    out = attn.o_proj(out.reshape(*hidden_states.shape[:-1], -1).contiguous())
    return out, weights


def _rerope(attn, plan, q, k, v, attention_mask, cache):
    """ReRoPE over keys cached unrotated: the prompt in one call, each later token with one
    product per key. Rows are handled one by one so that padding never counts as a position."""
    if cache is not None:  # the cache holds raw keys: (batch, kv_heads, tokens, head_dim) there
        k, v = (t.transpose(1, 2) for t in cache.update(k.transpose(1, 2), v.transpose(1, 2), attn.layer_idx))
    batch, new = q.shape[:2]
    total = k.shape[1]
    first_real = _leading_padding(attention_mask, batch, total)
    inv_freq = plan.inv_freq.to(q.device)
    window = plan.window if plan.window is not None else total + 1  # log-n alone: no clamp
    options = dict(leaky_factor=plan.leaky_factor, log_n_train_length=plan.log_n_train_length)
    out = q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    for row, first in enumerate(first_real):
        if new == total:  # the whole prompt at once (queries before `first` are padding)
            fused = plan.kernel and q.is_cuda and q.shape[-1] in (32, 64, 128)
            rerope = _kernel_rerope() if fused else rerope_attention_reference
            sl = slice(row, row + 1)
            out[sl, first:] = rerope(q[sl, first:], k[sl, first:], v[sl, first:], inv_freq, window, **options)
            continue
        for t in range(new):  # each new query sees the cached keys up to itself
            end = total - new + t + 1
            out[row:row + 1, t:t + 1] = rerope_decode_step(
                q[row:row + 1, t:t + 1], k[row:row + 1, first:end], v[row:row + 1, first:end], end - first - 1,
                inv_freq, window, plan.leaky_factor, "half", plan.log_n_train_length)
    return out


def _leading_padding(attention_mask, batch, total):
    """How many keys at the start of each row are padding (left padding), from the model's mask."""
    if attention_mask is None or attention_mask.dim() != 4:
        return [0] * batch
    last_query = attention_mask[:, 0, -1, -total:]  # what the newest token may see
    allowed = last_query if attention_mask.dtype == torch.bool else last_query == 0
    return [int(row.nonzero()[0]) if bool(row.any()) else 0 for row in allowed]


# --- finding the parts --------------------------------------------------------------------------


def _attention_layers(model):
    layers = [m for m in model.modules() if all(hasattr(m, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "layer_idx", "head_dim"))]
    if not layers:
        raise ValueError("model has no Llama-family attention layers (q_proj, k_proj, v_proj, o_proj)")
    return layers


def _rotary_embedding(model):
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding"):
            return module
    raise ValueError("model has no rotary embedding module (…RotaryEmbedding)")


def _attention_function(attn):
    """The attention backend the model was configured with (eager, sdpa, flash, ...)."""
    modeling = sys.modules[type(attn).__module__]
    implementation = getattr(attn.config, "_attn_implementation", None) or "eager"
    if implementation == "eager":
        return modeling.eager_attention_forward
    return modeling.ALL_ATTENTION_FUNCTIONS[implementation]


def _kernel_rope():
    from ..kernels import apply_rope_qk

    return apply_rope_qk


def _kernel_rerope():
    from ..kernels import rerope_attention

    return rerope_attention
