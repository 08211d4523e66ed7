"""Multimodal RoPE (M-RoPE): one position per axis (time, height, width) for every token.

Qwen2-VL (Wang et al. 2024, §2.1 "Multimodal Rotary Position Embedding") gives each token
three position ids (t, h, w) instead of one. A text token has t = h = w = its index, so
for text M-RoPE is plain RoPE. A vision token at frame f, row r, column c of a grid that
starts at position s gets (s + f·Δt, s + r, s + c), and the text after the grid resumes
at s + max(H, W) in transformers' get_rope_index (the paper says one past the largest id
of the grid; the two agree for images and differ for long videos).

Each feature pair i then turns by the angle of ONE axis, a(i) ∈ {t, h, w}:

    φ_i = p_{a(i)} · θ_i

Two ways of assigning axes to pairs are in use:

* sectioned (Qwen2-VL, Qwen2.5-VL; ``mrope_section = [16, 24, 24]`` for head_dim 128):
  the first 16 pairs (the fastest frequencies) follow t, the next 24 follow h, the last
  24 (the slowest) follow w;
* interleaved (Qwen3-VL; ``mrope_section = [24, 20, 20]``): pairs cycle t, h, w, t, h, w,
  ... so that every axis gets fast, middle and slow frequencies; pairs past 3·20 follow t.

Lesson 08 draws the position ids and the frequencies each axis gets. The Triton kernel
:func:`ropekit.kernels.apply_mrope_qk` computes the same in one launch; its plain-torch
twin :func:`apply_mrope_qk` is here.
"""

from __future__ import annotations

import itertools

import torch

from .checks import check_mrope_positions, check_sections
from .reference import apply_rope, rope_cos_sin

AXES = ("t", "h", "w")
TEXT, IMAGE, VIDEO = 0, 1, 2  # token types, as in transformers' mm_token_type_ids


# --- position ids ------------------------------------------------------------------------


def mrope_position_ids(token_types, image_grid_thw=None, video_grid_thw=None, *, spatial_merge_size: int = 1,
                       video_time_intervals=None, attention_mask=None):
    """The (t, h, w) position ids of a prompt mixing text, images and videos.

    Follows transformers' ``Qwen2VLModel.get_rope_index`` / ``Qwen2_5_VLModel.get_rope_index``.
    Walking the prompt left to right with a running position s:

    * a run of n text tokens gets t = h = w = s, s + 1, ..., s + n − 1; then s += n;
    * an image or video of patch grid (T, H, W) (H and W divided by ``spatial_merge_size``,
      as the vision encoder merges patches) gets, for its token (f, r, c) in row-major
      order, t = s + ⌊f·Δt⌋, h = s + r, w = s + c; then s += max(H, W).

    Δt is 1 for images; for video v it is ``video_time_intervals[v]`` (Qwen2.5-VL's
    tokens_per_second · seconds per temporal patch, so t follows real time; Qwen2-VL: 1).
    Qwen3-VL writes a timestamp between the frames of a video instead: pass each frame as
    its own video of grid (1, H, W) with text tokens between them.

    Args:
        token_types: ``(batch, seq)`` integers, 0 text, 1 image, 2 video. Each maximal run
            of image (video) tokens is one image (video) and takes the next grid.
        image_grid_thw, video_grid_thw: ``(n_images, 3)`` / ``(n_videos, 3)`` patch grids,
            in the order the images (videos) appear over the whole batch.
        spatial_merge_size: patches merged per side into one token (2 in Qwen2-VL).
        video_time_intervals: one Δt per video (default 1).
        attention_mask: ``(batch, seq)``, 0 for padding; padding gets position 0 and is
            skipped when numbering.

    Returns:
        ``(position_ids, deltas)``: int64 ``(3, batch, seq)`` (axis 0 is t, h, w) and
        ``(batch, 1)`` = largest id + 1 − number of tokens, which decoding adds to the
        index of each new text token. Lesson 08 draws them.
    """
    token_types = _check_token_types(token_types)
    batch, seq = token_types.shape
    grids = {IMAGE: _grid_iter(image_grid_thw, "image_grid_thw"), VIDEO: _grid_iter(video_grid_thw, "video_grid_thw")}
    intervals = iter(video_time_intervals) if video_time_intervals is not None else itertools.repeat(1)
    position_ids = torch.zeros(3, batch, seq, dtype=torch.int64)
    deltas = torch.zeros(batch, 1, dtype=torch.int64)
    for b in range(batch):
        keep = torch.ones(seq, dtype=torch.bool) if attention_mask is None else attention_mask[b].bool().cpu()
        types = token_types[b][keep].tolist()
        pieces, s, i = [], 0, 0
        for kind, run in itertools.groupby(types):
            n = len(list(run))
            if kind == TEXT:
                pieces.append(torch.arange(s, s + n).expand(3, n))
                s += n
            else:
                name = "image_grid_thw" if kind == IMAGE else "video_grid_thw"
                t, h, w = _next_grid(grids[kind], name, spatial_merge_size)
                dt = next(intervals) if kind == VIDEO else 1
                if t * h * w != n:
                    raise ValueError(
                        f"a run of {n} {'image' if kind == IMAGE else 'video'} tokens at index {i} of batch row {b} "
                        f"does not match its {name} grid, which has {t}·{h}·{w} = {t * h * w} tokens "
                        f"(after spatial_merge_size={spatial_merge_size})"
                    )
                pieces.append(vision_position_ids(s, (t, h, w), dt))
                s += max(h, w)
            i += n
        ids = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.int64)
        position_ids[:, b, keep] = ids
        deltas[b, 0] = (ids.max() + 1 if ids.numel() else 0) - len(types)
    return position_ids.to(token_types.device), deltas.to(token_types.device)


def vision_position_ids(start: int, grid_thw, time_interval: float = 1.0) -> torch.Tensor:
    """``(3, T·H·W)`` ids of one image or video grid placed at position ``start``:
    token (f, r, c) in row-major order gets (start + ⌊f·Δt⌋, start + r, start + c). Lesson 08 draws them."""
    t, h, w = (int(g) for g in grid_thw)
    frames = (torch.arange(t) * time_interval).long()
    f, r, c = torch.meshgrid(frames, torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack((f, r, c)).reshape(3, -1) + start


# --- which axis each pair follows ----------------------------------------------------------


def mrope_pair_axes(sections, interleaved: bool = False) -> torch.Tensor:
    """The axis (0 = t, 1 = h, 2 = w) whose position turns each feature pair.

    Args:
        sections: ``(n_t, n_h, n_w)`` pairs per axis, summing to rotary_dim // 2
            (transformers' ``mrope_section``).
        interleaved: False: contiguous sections, t then h then w (Qwen2-VL, Qwen2.5-VL).
            True: Qwen3-VL's interleave, pair i follows h when i % 3 == 1 and i < 3·n_h,
            w when i % 3 == 2 and i < 3·n_w, and t otherwise.

    Returns:
        int64 ``(rotary_dim // 2,)``.

    Lesson 08 draws both patterns.
    """
    n_t, n_h, n_w = check_sections(sections, interleaved)
    if not interleaved:
        return torch.repeat_interleave(torch.arange(3), torch.tensor([n_t, n_h, n_w]))
    i = torch.arange(n_t + n_h + n_w)
    axes = torch.zeros_like(i)
    axes[(i % 3 == 1) & (i < 3 * n_h)] = 1
    axes[(i % 3 == 2) & (i < 3 * n_w)] = 2
    return axes


# --- angles and rotation -------------------------------------------------------------------


def mrope_cos_sin(position_ids: torch.Tensor, inv_freq: torch.Tensor, sections, interleaved: bool = False,
                  attention_factor: float = 1.0, angles: str = "float32"):
    """cos(φ_i) and sin(φ_i) with φ_i = p_{a(i)}·θ_i, pair i taking the position of its axis.

    Args:
        position_ids: integer ``(3, batch, seq)`` from :func:`mrope_position_ids`
            (a ``(3, 1, seq)`` tensor broadcasts over the batch).
        inv_freq: ``(rotary_dim // 2,)`` from :func:`ropekit.rope_frequencies`.
        sections, interleaved: see :func:`mrope_pair_axes`.
        attention_factor: multiplies cos and sin, as in :func:`ropekit.rope_cos_sin`.
        angles: ``"float32"`` or ``"exact"`` (then inv_freq may be int64
            ``fixed_point_turns``), as in :func:`ropekit.rope_cos_sin`.

    Returns:
        ``(cos, sin)``, float32 ``(batch, seq, rotary_dim // 2)``. The angles are
        :func:`ropekit.rope_cos_sin` of each axis, then one axis picked per pair.

    Lesson 08.
    """
    check_mrope_positions(position_ids)
    check_sections(sections, interleaved, inv_freq.shape[-1])
    axes = mrope_pair_axes(sections, interleaved).to(position_ids.device)
    cos3, sin3 = rope_cos_sin(position_ids, inv_freq, attention_factor, angles)  # (3, batch, seq, r/2)
    index = axes.expand(1, *cos3.shape[1:])
    return cos3.gather(0, index)[0], sin3.gather(0, index)[0]


def mrope_cos_sin_loop(position_ids, inv_freq, sections, interleaved=False, attention_factor=1.0, angles="float32"):
    """The teaching twin of :func:`mrope_cos_sin`: one pair at a time, from its axis's positions. Lesson 08."""
    axes = mrope_pair_axes(sections, interleaved).tolist()
    columns = [rope_cos_sin(position_ids[a], inv_freq[i:i + 1], attention_factor, angles) for i, a in enumerate(axes)]
    return torch.cat([c for c, _ in columns], dim=-1), torch.cat([s for _, s in columns], dim=-1)


def apply_mrope(x: torch.Tensor, position_ids: torch.Tensor, inv_freq: torch.Tensor, sections,
                interleaved: bool = False, layout: str = "half", attention_factor: float = 1.0):
    """Rotate x by M-RoPE: :func:`ropekit.apply_rope` with the angles of :func:`mrope_cos_sin`.

    Args:
        x: ``(batch, seq, heads, head_dim)``; the first 2·len(inv_freq) features rotate.
        position_ids: ``(3, batch or 1, seq)``.
        layout: ``"half"`` (Qwen2-VL, Qwen3-VL rotate halves) or ``"paper"``.

    Returns:
        A tensor of x's shape and dtype. Lesson 08.
    """
    _check_x(x, "x")
    cos, sin = mrope_cos_sin(position_ids, inv_freq, sections, interleaved, attention_factor)
    return apply_rope(x, cos[:, :, None], sin[:, :, None], layout, 2 * cos.shape[-1])


def apply_mrope_qk(q, k, positions, inv_freq, sections, interleaved=False, layout="half", attention_factor=1.0,
                   inplace=False, *, angles="float32"):
    """The plain-torch twin of :func:`ropekit.kernels.apply_mrope_qk`: M-RoPE on q and k.

    Args:
        q: ``(batch, seq, q_heads, head_dim)``; k: ``(batch, seq, kv_heads, head_dim)``
            (grouped-query attention: any head count).
        positions: integer ``(3, batch or 1, seq)``.
        inv_freq, sections, interleaved, layout, attention_factor: see :func:`apply_mrope`.
        inplace: write the results into q and k and return them.
        angles: ``"float32"`` (default, transformers' float32 product) or ``"exact"``
            (:mod:`ropekit.exact_angles`; inv_freq float, or its int64 ``fixed_point_turns``),
            see :func:`ropekit.rope_cos_sin`. Lesson 09.

    Returns:
        ``(q_out, k_out)``. Lesson 08.
    """
    _check_x(q, "q")
    _check_x(k, "k")
    if k.shape[0] != q.shape[0] or k.shape[1] != q.shape[1] or k.shape[3] != q.shape[3]:
        raise ValueError(f"q (batch, seq, q_heads, head_dim) and k (batch, seq, kv_heads, head_dim) must agree "
                         f"on batch, seq and head_dim, got {tuple(q.shape)} and {tuple(k.shape)}")
    check_mrope_positions(positions, q.shape[0], q.shape[1])
    cos, sin = mrope_cos_sin(positions, inv_freq, sections, interleaved, attention_factor, angles)
    q_out = apply_rope(q, cos[:, :, None], sin[:, :, None], layout, 2 * cos.shape[-1])
    k_out = apply_rope(k, cos[:, :, None], sin[:, :, None], layout, 2 * cos.shape[-1])
    if inplace:
        return q.copy_(q_out), k.copy_(k_out)
    return q_out, k_out


# --- argument checks ---------------------------------------------------------------------------


def _check_x(x, name):
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point (batch, seq, heads, head_dim) tensor, got {got}")


def _check_token_types(token_types):
    if not isinstance(token_types, torch.Tensor) or token_types.dim() != 2 or token_types.is_floating_point():
        raise ValueError("token_types must be an integer (batch, seq) tensor (0 text, 1 image, 2 video)")
    if token_types.numel() and not bool(((token_types >= 0) & (token_types <= 2)).all()):
        raise ValueError("token_types must hold only 0 (text), 1 (image) and 2 (video)")
    return token_types


def _grid_iter(grids, name):
    if grids is None:
        return None
    grids = torch.as_tensor(grids)
    if grids.dim() != 2 or grids.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3) of (T, H, W) grids, got {tuple(grids.shape)}")
    return iter(grids.tolist())


def _next_grid(grids, name, merge):
    row = next(grids, None) if grids is not None else None
    if row is None:
        raise ValueError(f"token_types has more runs of vision tokens than {name} has grids")
    t, h, w = row
    if h % merge or w % merge:
        raise ValueError(f"{name} grid {row} is not divisible by spatial_merge_size={merge}")
    return t, h // merge, w // merge
