"""How much work the RoPE kernel does per token in each angle mode, read from its machine code.

    python benchmarks/kernel_instruction_counts.py [--kernel rope|mrope] [--out FILE]

No GPU needed: the kernel is compiled for sm_90 (H100/H200) by the installed triton, and
``cuobjdump`` (shipped with triton) lists the SASS instructions and registers of each
variant: bf16 q with 32 heads, k with 8, head_dim 128, (batch, seq, heads, head_dim)
memory, both layouts, for a cos/sin table and for angles computed in the kernel (float32
and exact), with the block sizes the launcher picks and with the table's block sizes.

``--kernel mrope``: the M-RoPE kernel (``ropekit.kernels.mrope``) instead, for the two
models of benchmarks/gpu_mrope_bench.py (Qwen2-VL-7B: 28 + 4 heads, sections 16/24/24;
Qwen3-VL-8B-like: 32 + 8 heads, 24/20/20 interleaved), float32 and exact angles, with the
launcher's block sizes and, where they differ, the table mode's.

The kernel's code is straight-line (the head loop is unrolled), so instructions per
token is what each thread executes per token it handles: a measure of work, not of speed
(memory decides the speed; benchmarks/gpu_exact_angles_bench.py measures it on a GPU).
"""

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ropekit.kernels import mrope, rope_triton

Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128
TARGET = GPUTarget("cuda", 90, 32)
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"


def compile_variant(paper, table, exact, block_s, block_hq, block_hk, num_warps):
    """The kernel compiled for sm_90 with the given constexprs, as the launcher would pass them
    (16-byte aligned pointers, ALIGN = 8 bf16 elements)."""
    kernel = rope_triton.rope_qk_kernel
    constants = dict(Q_HEADS=Q_HEADS, K_HEADS=KV_HEADS, HEAD_DIM=HEAD_DIM, HALF=HEAD_DIM // 2,
                     HALF_PAD=HEAD_DIM // 2, PASS_PAD=1, PAPER=paper, TABLE=table, EXACT=exact, POS_MODE=0,
                     VARLEN=False, COPY_PASS=False, ALIGN=8, BLOCK_S=block_s, BLOCK_HQ=block_hq, BLOCK_HK=block_hk)
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            if name in ("cos_ptr", "sin_ptr"):
                signature[name] = "*fp32"
            elif name == "inv_freq_ptr":
                signature[name] = "*i64" if exact else "*fp32"
            else:
                signature[name] = "*bf16"  # q, k, outputs; positions and cu_seqlens are unused here
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name.endswith("_scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps})


MROPE_MODELS = {"qwen2-vl-7b": (28, 4, (16, 24, 24), False), "qwen3-vl-8b": (32, 8, (24, 20, 20), True)}


def compile_mrope_variant(model, paper, exact, block_s, block_hq, block_hk, num_warps):
    """The M-RoPE kernel compiled for sm_90 as its launcher passes it (bf16, aligned, ALIGN = 8)."""
    q_heads, kv_heads, (n_t, n_h, n_w), interleaved = MROPE_MODELS[model]
    kernel = mrope.mrope_qk_kernel
    constants = dict(Q_HEADS=q_heads, K_HEADS=kv_heads, HEAD_DIM=HEAD_DIM, HALF=HEAD_DIM // 2,
                     HALF_PAD=HEAD_DIM // 2, PASS_PAD=1, N_T=n_t, N_H=n_h, N_W=n_w, INTERLEAVED=interleaved,
                     PAPER=paper, EXACT=exact, COPY_PASS=False, ALIGN=8, BLOCK_S=block_s, BLOCK_HQ=block_hq,
                     BLOCK_HK=block_hk)
    signature, attrs = {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            integer = name == "pos_ptr" or (name == "inv_freq_ptr" and exact)
            signature[name] = "*i64" if integer else "*fp32" if name == "inv_freq_ptr" else "*bf16"
            attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            signature[name] = "fp32" if name.endswith("_scale") else "i32"
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    return triton.compile(source, target=TARGET, options={"num_warps": num_warps})


def sass_stats(compiled):
    """(instructions, registers) of a compiled kernel, from cuobjdump."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([CUOBJDUMP, "-sass", f.name], capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([CUOBJDUMP, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    instructions = len(re.findall(r"/\*[0-9a-f]{4,}\*/\s+[A-Z@]", sass))
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    return instructions, registers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--kernel", choices=("rope", "mrope"), default="rope", help="which kernel (default rope)")
    args = parser.parse_args()
    lines = mrope_lines() if args.kernel == "mrope" else rope_lines()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


def mrope_lines():
    lines = [f"triton {triton.__version__}, sm_90, bf16, M-RoPE kernel, head_dim {HEAD_DIM}",
             f"{'model':12} {'layout':6} {'mode':8} {'block sizes':11} {'(BLOCK_S, HQ, HK, warps)':>25} "
             f"{'instructions':>12} {'per token':>9} {'registers':>9}"]
    for model, (q_heads, kv_heads, _, _) in MROPE_MODELS.items():
        for paper in (False, True):
            table = rope_triton.pick_block_sizes(q_heads, kv_heads, HEAD_DIM, HEAD_DIM, 2, paper, "table", False)
            for mode in ("float32", "exact"):
                own = rope_triton.pick_block_sizes(q_heads, kv_heads, HEAD_DIM, HEAD_DIM, 2, paper, mode, False)
                for which, sizes in (("launcher's", own), ("table's", table)):
                    if which == "table's" and sizes == own:
                        continue
                    instructions, registers = sass_stats(compile_mrope_variant(model, paper, mode == "exact", *sizes))
                    lines.append(f"{model:12} {'paper' if paper else 'half':6} {mode:8} {which:11} {str(sizes):>25} "
                                 f"{instructions:>12} {instructions / sizes[0]:>9.0f} {registers:>9}")
    return lines


def rope_lines():
    lines = [f"triton {triton.__version__}, sm_90, bf16, {Q_HEADS} + {KV_HEADS} heads, head_dim {HEAD_DIM}",
             f"{'layout':6} {'mode':8} {'block sizes':22} {'(BLOCK_S, HQ, HK, warps)':>25} "
             f"{'instructions':>12} {'per token':>9} {'registers':>9}"]
    for paper in (False, True):
        table_sizes = rope_triton.pick_block_sizes(Q_HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM, 2, paper, "table", False)
        own_sizes = rope_triton.pick_block_sizes(Q_HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM, 2, paper, "float32", False)
        variants = [("table", True, False, "launcher's", table_sizes)]
        for mode, exact in (("float32", False), ("exact", True)):
            variants += [(mode, False, exact, "launcher's", own_sizes), (mode, False, exact, "table's", table_sizes)]
        for mode, table, exact, which, sizes in variants:
            instructions, registers = sass_stats(compile_variant(paper, table, exact, *sizes))
            lines.append(f"{'paper' if paper else 'half':6} {mode:8} {which:22} {str(sizes):>25} "
                         f"{instructions:>12} {instructions / sizes[0]:>9.0f} {registers:>9}")
    return lines


if __name__ == "__main__":
    main()
