"""Save and load a TinyLlama: ropekit's own folder format, and the Hugging Face LLaMA format.

A ropekit checkpoint is a folder with

* ``config.json``: ``{"format": "ropekit-tiny-llama", "config": {ModelConfig fields}}``;
* ``model.safetensors``: the state dict under the module names of ``TinyLlama``
  (float32 or float16; loading always gives a float32 model).

Files are written and read by the few lines below (no ``safetensors`` package needed); the
``safetensors`` and ``transformers`` packages read them as their own.

:func:`export_hf` writes what ``transformers.LlamaForCausalLM.from_pretrained`` reads
(``config.json`` + ``model.safetensors`` with HF's parameter names, half layout, which is
how Hugging Face's converter stores Meta's paper-layout weights), and :func:`load_hf`
reads it back; ``transformers`` itself is never imported here. Lesson 06 loads the committed checkpoint with :func:`load`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict
from pathlib import Path

import torch

from .llama import ModelConfig, TinyLlama

FORMAT = "ropekit-tiny-llama"


# --- the safetensors file format, read and written without the safetensors package -----
# A .safetensors file is: 8 bytes (little-endian u64) = header size n; n bytes of JSON
# {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}};
# then the tensors' raw little-endian bytes, offsets counted from the end of the header.
# Writing it here keeps checkpoints loadable wherever torch is (the safetensors package
# reads these files too; tests/test_model.py checks both directions).

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def write_safetensors(tensors: dict, path, metadata: dict | None = None):
    """Write ``{name: tensor}`` (float32/float16/bfloat16, on any device) as a .safetensors file."""
    codes = {dtype: code for code, dtype in _DTYPES.items()}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in codes:
            raise ValueError(f"{name}: dtype {t.dtype} is not one of {list(codes)}")
        blob = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to a multiple of 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path) -> dict:
    """``{name: tensor}`` (CPU) from a .safetensors file with F32, F16 or BF16 tensors."""
    raw = Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    header.pop("__metadata__", None)
    data = raw[8 + size :]
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}, expected one of {list(_DTYPES)}")
        begin, end = entry["data_offsets"]
        chunk = bytearray(data[begin:end])
        flat = torch.frombuffer(chunk, dtype=torch.uint8) if chunk else torch.empty(0, dtype=torch.uint8)
        tensors[name] = flat.view(_DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors


def save(model: TinyLlama, folder, dtype: torch.dtype = torch.float32):
    """Write ``model`` into ``folder`` (created if needed) in ropekit's format.

    dtype: float32 (exact) or float16 (half the bytes; the card of a float16 checkpoint
    must quote the loss of the reloaded weights). Returns the folder as a Path.
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().to("cpu", dtype).contiguous() for name, t in model.state_dict().items()}
    write_safetensors(state, folder / "model.safetensors", {"format": FORMAT})
    (folder / "config.json").write_text(json.dumps({"format": FORMAT, "config": asdict(model.config)}, indent=2) + "\n")
    return folder


def load(folder, device="cpu") -> TinyLlama:
    """Read a checkpoint written by :func:`save`; returns a float32 TinyLlama in eval mode.

    ``load("checkpoints/tiny-llama-main")`` is how lesson 06 starts."""
    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / 'config.json'} is not a ropekit checkpoint (format {meta.get('format')!r}); "
                         "for a Hugging Face folder use load_hf")
    model = TinyLlama(ModelConfig(**meta["config"]))
    state = read_safetensors(folder / "model.safetensors")
    model.load_state_dict({name: t.float() for name, t in state.items()})
    return model.to(device).eval()


# --- Hugging Face ------------------------------------------------------------------------


def hf_config(config: ModelConfig) -> dict:
    """The ``config.json`` of ``transformers.LlamaConfig`` for this model (plain RoPE)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.train_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},  # 5.x
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def export_hf(model: TinyLlama, folder):
    """Write ``model`` as a Hugging Face LLaMA (``LlamaForCausalLM``) checkpoint.

    A paper-layout model is first permuted into the half layout with
    ``ropekit.permute_qk_weight`` (HF's RoPE pairs features (i, i + d/2)); the logits do not
    change. Partial rotary and log-n training have no LlamaConfig field, so those models
    raise ValueError. Returns the folder as a Path.
    """
    c = model.config
    if c.rotary_dim != c.head_dim:
        raise ValueError(
            f"LlamaForCausalLM rotates every feature: rotary_dim ({c.rotary_dim}) must equal head_dim ({c.head_dim})"
        )
    if c.log_n_trained:
        raise ValueError("LlamaForCausalLM has no log-n query scaling: a model trained with it cannot be exported")
    if c.layout != "half":
        model = model.with_layout("half")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = hf_names(c)
    state = {names[name]: t.detach().cpu().float().contiguous() for name, t in model.state_dict().items()}
    write_safetensors(state, folder / "model.safetensors", {"format": "pt"})
    (folder / "config.json").write_text(json.dumps(hf_config(c), indent=2) + "\n")
    return folder


def load_hf(folder, device="cpu") -> TinyLlama:
    """Read a Hugging Face LLaMA folder (config.json + one model.safetensors) into a TinyLlama.

    The model gets the half layout and ``train_length = max_position_embeddings``. Configs
    with rope scaling, biases or tied embeddings raise ValueError: choose a scheme at call
    time instead of storing one.
    """
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text())
    rope = hf.get("rope_parameters") or {}
    if (rope.get("rope_type", "default") != "default") or hf.get("rope_scaling"):
        raise ValueError(f"load_hf reads plain-RoPE configs only, got rope parameters {rope or hf.get('rope_scaling')}")
    if hf.get("attention_bias") or hf.get("mlp_bias") or hf.get("tie_word_embeddings"):
        raise ValueError("load_hf needs attention_bias, mlp_bias and tie_word_embeddings all false")
    config = ModelConfig(
        vocab_size=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"], n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
        hidden_dim=hf["intermediate_size"], rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        layout="half", train_length=hf["max_position_embeddings"], norm_eps=hf["rms_norm_eps"],
    )
    if hf.get("head_dim", config.head_dim) != config.head_dim:
        raise ValueError(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads = {config.head_dim}")
    state = read_safetensors(folder / "model.safetensors")
    model = TinyLlama(config)
    ours = {theirs: mine for mine, theirs in hf_names(config).items()}
    model.load_state_dict({ours[name]: t.float() for name, t in state.items()})
    return model.to(device).eval()


def hf_names(config: ModelConfig) -> dict:
    """ropekit parameter name -> Hugging Face LLaMA parameter name, for every parameter."""
    names = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
    for i in range(config.n_layers):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        names[ours + "attn_norm.weight"] = theirs + "input_layernorm.weight"
        names[ours + "mlp_norm.weight"] = theirs + "post_attention_layernorm.weight"
        for p in "qkvo":
            names[ours + f"attn.{p}_proj.weight"] = theirs + f"self_attn.{p}_proj.weight"
        for p in ("gate", "up", "down"):
            names[ours + f"mlp.{p}.weight"] = theirs + f"mlp.{p}_proj.weight"
    return names
