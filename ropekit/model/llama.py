"""A tiny LLaMA, written to be read in one sitting: the model lesson 06 trains and probes.

    tokens → embedding → N × [ x + Attention(RMSNorm(x)),  x + SwiGLU(RMSNorm(x)) ] → RMSNorm → LM head

* RMSNorm (Zhang & Sennrich 2019, eq. 4): y = x / √(mean(x²) + ε) ⊙ g. No mean subtraction,
  no bias: LayerNorm's re-centring is dropped, its re-scaling kept.
* Grouped-query attention (Ainslie et al. 2023): ``n_heads`` query heads share
  ``n_kv_heads`` key/value heads (query head h reads kv head h // (n_heads / n_kv_heads)).
  Queries and keys are rotated by the position scheme chosen *at call time*
  (:class:`PositionScheme`), always through ropekit's own functions.
* SwiGLU (Shazeer 2020, eq. 6): FFN(x) = W_down (SiLU(W_gate x) ⊙ W_up x): a gated product
  of two projections, not SiLU applied to one.

Every q/k/v tensor is ``(batch, seq, heads, head_dim)``. Weights never depend on positions,
so the same checkpoint runs under RoPE, PI, NTK, YaRN, ReRoPE, ... without retraining.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import permute_qk_weight
from .attention import Positions, attend
from .cache import KVCache
from .schemes import as_scheme


@dataclass
class ModelConfig:
    """Sizes of a TinyLlama. ``head_dim = dim // n_heads``.

    Args:
        vocab_size: 256 for byte-level text.
        dim, n_layers, n_heads, n_kv_heads: width, depth, query heads, key/value heads
            (n_kv_heads divides n_heads).
        hidden_dim: width of the SwiGLU MLP (LLaMA uses about 8/3 · dim).
        rope_base: the RoPE base b the model is trained with.
        rotary_dim: rotate only the first rotary_dim features of each head (partial rotary);
            default head_dim.
        layout: ``"half"`` (HF / GPT-NeoX pairs) or ``"paper"`` (RoFormer / Meta pairs).
        train_length: L, the sequence length it is trained at (the schemes' L_0).
        log_n_trained: trained with Su's log-n query scaling log_L n (queries of token n
            multiplied by ln n / ln L at every position, as in kexue.fm/archives/8823).
        norm_eps: ε of RMSNorm.
    """

    vocab_size: int = 256
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    hidden_dim: int = 688
    rope_base: float = 10000.0
    rotary_dim: int | None = None
    layout: str = "half"
    train_length: int = 256
    log_n_trained: bool = False
    norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "hidden_dim", "train_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads must divide dim and n_kv_heads must divide n_heads, got dim={self.dim}, "
                f"n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}"
            )
        if self.rotary_dim is None:
            self.rotary_dim = self.head_dim
        if not (isinstance(self.rotary_dim, int) and 0 < self.rotary_dim <= self.head_dim and self.rotary_dim % 2 == 0):
            raise ValueError(f"rotary_dim must be an even integer in [2, head_dim={self.head_dim}], got {self.rotary_dim!r}")
        if self.layout not in ("half", "paper"):
            raise ValueError(f"layout must be 'half' or 'paper', got {self.layout!r}")
        if self.train_length < 2:
            raise ValueError(f"train_length must be at least 2, got {self.train_length}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


# --- the two LLaMA operators that are not attention -------------------------------------


class RMSNorm(nn.Module):
    """y = x / √(mean_i x_i² + ε) ⊙ g (Zhang & Sennrich 2019, eq. 4), computed in float32 or wider.

    x: ``(..., dim)``; returns x's shape and dtype. Lesson 06.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        wide = x.to(torch.promote_types(x.dtype, torch.float32))  # float32 for half inputs, as HF does
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class SwiGLU(nn.Module):
    """FFN_SwiGLU(x) = W_down (SiLU(W_gate x) ⊙ W_up x) (Shazeer 2020, eq. 6), no biases.

    x: ``(..., dim)`` → ``(..., dim)``; three dim × hidden matrices. Lesson 06.
    """

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden_dim, bias=False)
        self.up = nn.Linear(dim, hidden_dim, bias=False)
        self.down = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Attention(nn.Module):
    """GQA self-attention: projections around :func:`attend`. No biases."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, config.n_heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.dim, config.n_kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x, pos: Positions, layer: int, cache=None, capture=None):
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(batch, seq, self.n_kv_heads, self.head_dim)
        out = attend(q, k, v, pos, layer, cache)
        if capture is not None:
            capture.append({"q": q.detach(), "k": k.detach(), "v": v.detach(), "out": out.detach()})
        return self.o_proj(out.reshape(batch, seq, -1))


class Block(nn.Module):
    """x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)): LLaMA's pre-norm block."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(config.dim, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = SwiGLU(config.dim, config.hidden_dim)

    def forward(self, x, pos, layer, cache=None, capture=None):
        x = x + self.attn(self.attn_norm(x), pos, layer, cache, capture)
        return x + self.mlp(self.mlp_norm(x))


# --- the model ---------------------------------------------------------------------------


class TinyLlama(nn.Module):
    """A LLaMA-style decoder whose position scheme is chosen at every call.

    Example:
        >>> model = TinyLlama(ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=172))
        >>> tokens = torch.randint(0, 256, (1, 32))
        >>> logits = model(tokens, PositionScheme("ntk", factor=4))        # (1, 32, 256)
        >>> cache = model.new_cache(PositionScheme("rerope", window=8))
        >>> logits = model(tokens, cache=cache)                             # prefill
        >>> logits = model(tokens[:, :1], cache=cache)                      # one decode step

    Lesson 06 trains it on text and evaluates every scheme.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for block in self.blocks:  # GPT-2's scaled init of the projections into the residual stream
            for linear in (block.attn.o_proj, block.mlp.down):
                nn.init.normal_(linear.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, scheme=None) -> KVCache:
        """An empty :class:`KVCache` for ``scheme`` (a PositionScheme, a name or None)."""
        scheme = as_scheme(scheme)
        self._log_n_mode(scheme)
        return KVCache(scheme)

    def forward(self, tokens, scheme=None, *, cache: KVCache | None = None, kernels=None, capture=None):
        """Logits for every position.

        Args:
            tokens: ``(batch, seq)`` integer token ids.
            scheme: a :class:`PositionScheme` (or a name, or None for plain RoPE). With a
                cache, leave it None: the cache's scheme is used.
            cache: a :class:`KVCache` from :meth:`new_cache`: the tokens continue the cached
                ones (prefill when it is empty, decode afterwards), and the cache grows.
            kernels: run the Triton kernels (``apply_rope_qk`` + SDPA, fused
                ``rerope_attention``) in the full forward; default: True for CUDA tokens,
                False on the CPU. Decoding with a cache always uses the reference functions.
            capture: a list; each layer appends a dict of its unrotated ``q``, ``k``, ``v``
                and attention output ``out``, each ``(batch, seq, heads, head_dim)``.

        Returns:
            ``(batch, seq, vocab_size)`` float32 logits. Lesson 06.
        """
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an integer tensor of shape (batch, seq), got {got}")
        if cache is not None:
            if scheme is not None and as_scheme(scheme) != cache.scheme:
                raise ValueError(
                    f"scheme {scheme!r} differs from the cache's {cache.scheme!r}; pass scheme=None with a cache"
                )
            scheme, offset, kernels = cache.scheme, cache.length, False
        else:
            scheme, offset = as_scheme(scheme), 0
        kernels = tokens.is_cuda if kernels is None else bool(kernels)
        pos = self.positions(scheme, offset, tokens.shape[1], tokens.device, kernels)
        x = self.embed(tokens)
        for layer, block in enumerate(self.blocks):
            x = block(x, pos, layer, cache, capture)
        if cache is not None:
            cache.advance(tokens.shape[1])
        return self.lm_head(self.norm(x)).float()

    def positions(self, scheme, offset, new, device, kernels=False) -> Positions:
        """Resolve ``scheme`` for tokens offset .. offset + new − 1 (see :class:`Positions`)."""
        c = self.config
        if kernels and c.rotary_dim != c.head_dim and scheme.is_rerope:
            raise ValueError(
                "kernels=True runs the fused ReRoPE kernel, which rotates every feature: rotary_dim must equal head_dim"
            )
        inv_freq, attention_factor = scheme.frequencies(c.rotary_dim, c.rope_base, c.train_length, offset + new)
        log_n = self._log_n_mode(scheme)
        return Positions(scheme, inv_freq.to(device), attention_factor, c.layout, c.train_length, log_n, offset, kernels)

    def _log_n_mode(self, scheme):
        if self.config.log_n_trained:
            if scheme.log_n:
                raise ValueError("this model was trained with log-n scaling, which it always applies; leave log_n False")
            return "trained"
        return "test" if scheme.log_n else None

    def token_scores(self, tokens, scheme=None, kernels=None):
        """Per-position next-token cross-entropy and greedy correctness.

        tokens ``(batch, seq)`` → ``(loss, correct)``, each ``(batch, seq − 1)``: loss[b, t] =
        −log p(tokens[b, t + 1] | tokens[b, ≤ t]) in nats, correct[b, t] = whether the
        argmax prediction equals tokens[b, t + 1]. The curves and tables of lesson 06.
        """
        logits = self(tokens, scheme, kernels=kernels)[:, :-1]
        targets = tokens[:, 1:]
        loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return loss, logits.argmax(-1) == targets

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens: int, scheme=None, temperature: float = 0.0, generator=None):
        """Prefill the prompt into a KV cache, then decode one token at a time.

        Args:
            prompt: ``(batch, seq)`` token ids.
            max_new_tokens: how many tokens to add.
            scheme: as in :meth:`forward`.
            temperature: 0 for greedy decoding, else sample from softmax(logits / temperature)
                with ``generator`` (a torch.Generator, for reproducible samples).

        Returns:
            ``(tokens, logits)``: ``(batch, seq + max_new_tokens)`` ids (prompt first) and the
            ``(batch, max_new_tokens, vocab_size)`` logits each new token was chosen from.
            Greedy tokens and logits equal those of full forwards over the growing sequence
            (but for dynamic NTK past L; see :class:`KVCache`). Lesson 06.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        cache = self.new_cache(scheme)
        tokens, step_logits = prompt, []
        next_input = prompt
        for _ in range(max_new_tokens):
            logits = self(next_input, cache=cache)[:, -1]
            if temperature == 0:
                next_token = logits.argmax(-1, keepdim=True)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                next_token = torch.multinomial(probs, 1, generator=generator)
            step_logits.append(logits)
            tokens = torch.cat((tokens, next_token), dim=1)
            next_input = next_token
        empty = prompt.new_zeros((prompt.shape[0], 0, self.config.vocab_size), dtype=torch.float32)
        return tokens, torch.stack(step_logits, dim=1) if step_logits else empty

    def with_layout(self, layout: str) -> "TinyLlama":
        """A copy whose q and k projections are permuted into ``layout`` (``permute_qk_weight``).

        The permutation reorders every head's features so that the paper pairs (2i, 2i+1)
        become the half pairs (i, i + r/2) or back; scores, and so logits, do not change.
        Lesson 02 derives it.
        """
        config = ModelConfig(**{**asdict(self.config), "layout": layout})
        copy = TinyLlama(config).to(self.lm_head.weight.device, self.lm_head.weight.dtype)
        copy.load_state_dict(self.state_dict())
        c = self.config
        for src, dst in zip(self.blocks, copy.blocks):
            for name, heads in (("q_proj", c.n_heads), ("k_proj", c.n_kv_heads)):
                weight = getattr(src.attn, name).weight.detach()
                getattr(dst.attn, name).weight.data.copy_(permute_qk_weight(weight, heads, c.layout, layout, c.rotary_dim))
        return copy
