"""Prefill and decode of a Hugging Face Llama, unpatched and patched by ropekit, on one GPU.

    python benchmarks/gpu_transformers_patch.py --out benchmarks/results/h200-transformers

A randomly initialised LlamaForCausalLM (8 layers, hidden 2048, 16 query / 8 key-value heads of
128, bf16, SDPA attention; no download) runs
  * prefill: one forward over batch x prompt tokens (use_cache=True), and
  * decode: `new` greedy tokens after that prompt through model.generate (the model's cache),
for: the unpatched model; `patch(kernel=True)` (RoPE by ropekit.kernels.apply_rope_qk); and
`patch(window=512, kernel=True)` (ReRoPE: fused kernel for the prompt, one product per cached
key per step). Times are CUDA-event medians of `--reps` runs after a warm-up; the CSV and a
README with device, versions, date and command go to --out.
"""

import argparse
import datetime
import json
import pathlib
import statistics
import sys

import torch
import transformers

import ropekit
import ropekit.integrations.transformers as rk
from ropekit.bench.tables import write_rows


def model_for_bench(layers):
    config = transformers.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                                      num_hidden_layers=layers, num_attention_heads=16, num_key_value_heads=8,
                                      max_position_embeddings=32768)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()


def median_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times), max(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new", type=int, default=32, help="decoded tokens")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = model_for_bench(args.layers)
    variants = {"unpatched": None, "ropekit kernel": dict(kernel=True),
                "ReRoPE w=512 (kernel)": dict(kernel=True, window=512)}
    rows = []
    for batch, prompt in ((1, 4096), (1, 16384), (8, 2048)):
        ids = torch.randint(0, 32000, (batch, prompt), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
        for name, options in variants.items():
            rk.unpatch(model)
            if options is not None:
                rk.patch(model, **options)
            with torch.no_grad():
                prefill = median_ms(lambda: model(ids, use_cache=True), args.reps)
                generate = median_ms(lambda: model.generate(ids, max_new_tokens=args.new, min_new_tokens=args.new,
                                                            do_sample=False), max(2, args.reps // 2))
            per_token = (generate[0] - prefill[0]) / args.new
            rows.append(dict(batch=batch, prompt=prompt, variant=name, prefill_ms=round(prefill[0], 3),
                             prefill_min_ms=round(prefill[1], 3), prefill_max_ms=round(prefill[2], 3),
                             generate_ms=round(generate[0], 3), decode_ms_per_token=round(per_token, 3)))
            print(rows[-1], flush=True)
    rk.unpatch(model)
    write_rows(rows, out / "transformers_patch.csv")
    meta = dict(device=torch.cuda.get_device_name(), torch=torch.__version__, triton=__import__("triton").__version__,
                transformers=transformers.__version__, ropekit=ropekit.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                command="python " + " ".join(sys.argv), layers=args.layers, reps=args.reps, new_tokens=args.new)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    lines = [f"# {meta['device']}: a Llama (random weights, bf16, SDPA) unpatched and patched by ropekit", "",
             f"{meta['date']}; torch {meta['torch']}, triton {meta['triton']}, transformers {meta['transformers']}",
             f"`{meta['command']}`", "", "decode ms/token = (generate − prefill) / new tokens", "",
             "| batch | prompt | variant | prefill ms (median [min-max]) | decode ms/token |", "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['prompt']} | {r['variant']} | {r['prefill_ms']} [{r['prefill_min_ms']}-"
              f"{r['prefill_max_ms']}] | {r['decode_ms_per_token']} |" for r in rows]
    (out / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
