"""The PyTorch twin of `elab bench`: the same models, the same step, the same timing.

Builds each rung of elab's benchmark ladder (crates/train/src/bench.rs) as a plain PyTorch
GPT (the shapes, init and loss positions of crates/model/src/lib.rs), trains it with AdamW on
one fixed random batch, and times the steps as elab does: 3 untimed warmup steps, then
--steps timed ones, with no read-back until the last (elab reads its losses back once, at the
end, which also waits for the device). Prints one JSON object per rung and mode on stdout
(progress goes to stderr):

    python3 benches/torch_twin.py [--steps 10] [--rungs 10k,100k] [--max-params 20000000]
                                  [--device cpu|cuda] [--modes eager,answer,compile]

`--modes` picks the step: `eager` runs every position through the model and reads the loss at
the answer's (as most PyTorch code does), `answer` computes the last block and the head at the
answer's positions only (the work elab does), and `compile` is `answer` under `torch.compile`
(the backward is compiled with it; the optimizer stays eager; the compilation falls in the
warmup steps).
`benches/compare.py` puts this output beside `elab bench --backend cpu --json`
(`just bench-compare` runs both); `benches/gpu-check.sh` runs it with `--device cuda`.
Needs only a CPU build of PyTorch for the defaults (CPU, eager).
"""

import argparse
import ctypes
import gc
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print(
        "PyTorch is not installed: pip install torch (CPU is enough); "
        "only `just bench-compare` needs it",
        file=sys.stderr,
    )
    sys.exit(3)

# name: (n_layer, d_model, n_head, d_mlp, layer_norm, vocab, n_ctx, prompt_len, answer_len, batch)
RUNGS = {
    # elab's ladder: 3-digit reversed addition, 11 tokens of context, batch 256.
    "10k": (2, 24, 2, 96, True, 13, 11, 8, 4, 256),
    "100k": (2, 64, 4, 256, True, 13, 11, 8, 4, 256),
    "1M": (4, 144, 4, 576, True, 13, 11, 8, 4, 256),
    "3M": (6, 208, 4, 832, True, 13, 11, 8, 4, 256),
    "10M": (6, 384, 6, 1536, True, 13, 11, 8, 4, 256),
    # Nanda et al. 2023 grokking: `x + y =` mod 113, vocab p + 2, 30% of 113^2 pairs, one batch.
    "nanda": (1, 128, 4, 512, False, 115, 4, 4, 1, 3831),
}


# eager: every position through the model (the loss reads the answer's); answer: eager, the
# last block and the head at the answer's positions only (elab's work); compile: `answer`
# under torch.compile.
MODES = ("eager", "answer", "compile")


class CausalSelfAttention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d)  # q, k, v for all heads, in that order
        self.c_proj = nn.Linear(d, d)

    def forward(self, x, first=0):
        """The attention output at positions `first..` (every position still serves as a key)."""
        b, t, d = x.shape
        if first == 0:
            q, k, v = self.c_attn(x).split(d, dim=2)
        else:
            # Queries only at the positions whose outputs are read, as elab computes them.
            w, bias = self.c_attn.weight, self.c_attn.bias
            q = F.linear(x[:, first:], w[:d], bias[:d])
            k, v = F.linear(x, w[d:], bias[d:]).split(d, dim=2)
        tq = t - first
        q = q.reshape(b, tq, self.n_head, d // self.n_head).transpose(1, 2)
        k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (k, v))
        # PyTorch's fused attention (softmax(q k^T / sqrt(hd)) v with a causal mask), as a
        # researcher would write it today; elab spells the same thing out with matmuls. Query
        # i (position first + i) sees keys 0..first + i: a bottom-right aligned causal mask.
        if first == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            mask = torch.ones(tq, t, dtype=torch.bool, device=x.device).tril(diagonal=first)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(b, tq, d))


class Block(nn.Module):
    def __init__(self, d, n_head, d_mlp, layer_norm):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d) if layer_norm else nn.Identity()
        self.attn = CausalSelfAttention(d, n_head)
        self.ln_2 = nn.LayerNorm(d) if layer_norm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(d, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d))

    def forward(self, x, first=0):
        x = x[:, first:] + self.attn(self.ln_1(x), first)
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, vocab, n_ctx, n_layer, d, n_head, d_mlp, layer_norm):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_ctx, d)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d, n_head, d_mlp, layer_norm) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d) if layer_norm else nn.Identity()
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx, first=0):
        """The logits at positions `first..`. The last block computes its queries, MLP and the
        head there only, as elab's model does (crates/model/src/lib.rs): the positions before
        are needed only as keys and values."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.blocks[-1](x, first)
        return self.lm_head(self.ln_f(x))


# The variables that hold PyTorch's CPU kernels below the machine's widest instructions
# (`just bench-compare ... avx2`).
HOLDS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def held():
    """Which of HOLDS this process ran under, as `NAME=value` (each row carries them, so that
    benches/compare.py reads what every mode was held to from the data)."""
    return [f"{k}={os.environ[k]}" for k in HOLDS if os.environ.get(k)]


def device_label(device, mode):
    """What the rows ran on, e.g. `cpu, torch 2.15.0, 2 threads` (benches/compare.py reads the
    `torch X` part)."""
    if device.type == "cuda":
        # float32 matmuls stay float32 unless this says otherwise (TF32 would be a lower
        # precision than elab's).
        where = f"cuda {torch.cuda.get_device_name(device)}"
        extra = f", matmul precision {torch.get_float32_matmul_precision()}"
    else:
        threads = torch.get_num_threads()
        where, extra = "cpu", f", {threads} thread{'s' * (threads != 1)}"
    return f"{where}, torch {torch.__version__}{extra}"


def peak_rss_reset():
    try:  # hand the previous rung's freed heap back to the kernel, so it doesn't count here
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def bench_rung(name, steps, max_params, device, mode):
    n_layer, d, n_head, d_mlp, layer_norm, vocab, n_ctx, prompt_len, answer_len, batch = RUNGS[name]
    model = Gpt(vocab, n_ctx, n_layer, d, n_head, d_mlp, layer_norm)
    params = sum(p.numel() for p in model.parameters())
    if params > max_params:
        return None
    model.to(device)
    # elab decays every parameter (one group), no gradient clipping.
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=1.0
    )
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(0, vocab, (batch, n_ctx + 1), generator=gen).to(device)
    idx, targets = seq[:, :n_ctx], seq[:, prompt_len : prompt_len + answer_len]
    answer = slice(prompt_len - 1, prompt_len - 1 + answer_len)  # positions predicting the answer

    if mode == "eager":
        # Every position through the whole model, the loss read at the answer's: the step as
        # most PyTorch training code writes it.
        def loss_of(idx, targets):
            logits = model(idx)[:, answer]
            return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    else:
        # The same work as elab: the last block and the head at the answer's positions only.
        def loss_of(idx, targets):
            logits = model(idx, first=answer.start)[:, : answer.stop - answer.start]
            return F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))

    if mode == "compile":
        # A fresh compilation per rung: rungs share this function's code, and dynamo would
        # stop recompiling it (and run eagerly) after its cache limit.
        torch._dynamo.reset()
        loss_of = torch.compile(loss_of)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(idx, targets)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # the warmup (and compilation) stays out of the timing
    start = time.perf_counter()
    for _ in range(steps):
        last = step()
    loss = last.item()  # the one read-back, which waits for the device, as elab's
    seconds = (time.perf_counter() - start) / steps
    if not math.isfinite(loss):
        raise RuntimeError(f"{name}: loss diverged while benchmarking")
    return dict(
        rung=name,
        backend="torch",
        mode=mode,
        device=device_label(device, mode),
        held=held(),
        n_layer=n_layer,
        d_model=d,
        params=params,
        batch=batch,
        n_ctx=n_ctx,
        ms_per_step=round(seconds * 1e3, 3),
        tokens_per_s=round(batch * n_ctx / seconds, 1),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per rung (after 3 warmup)")
    ap.add_argument("--rungs", default=",".join(RUNGS), help="comma-separated rung names")
    ap.add_argument("--max-params", type=int, default=20_000_000, help="skip larger rungs")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument(
        "--modes", default="eager", help="comma-separated: " + ", ".join(MODES)
    )
    args = ap.parse_args()
    names = [r.strip() for r in args.rungs.split(",") if r.strip()]
    unknown = [r for r in names if r not in RUNGS]
    if unknown:
        ap.error(f"unknown rung(s) {unknown}; known: {', '.join(RUNGS)}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes {args.modes!r}: expected some of {', '.join(MODES)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this PyTorch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in names:
        for mode in modes:
            gc.collect()  # the previous rung's model and optimizer are gone by now
            peak_rss_reset()
            row = bench_rung(name, args.steps, args.max_params, device, mode)
            if row is None:
                print(f"torch {name}: skipped (over --max-params)", file=sys.stderr)
                break
            row["peak_rss_mib"] = round(peak_rss_mib(), 1)
            # Printed at once: a caller that stops this process keeps the rows done so far.
            print(json.dumps(row), flush=True)
            print(
                f"torch {name} ({mode}): {row['params']} params, "
                f"{row['ms_per_step']:.1f} ms/step, {row['tokens_per_s']:.0f} tokens/s, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
