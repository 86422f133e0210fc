"""The products of gemm-shapes (src/main.rs) in PyTorch: torch.mm, best of 15, in GFLOP/s.

    python3 benches/gemm-shapes/torch_mm.py
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python3 benches/gemm-shapes/torch_mm.py
"""

import time

import torch

# (m, k, n, what): the 1M rung's products (2816 rows = 256 examples x 11 positions).
SHAPES = [
    (2816, 144, 432, "qkv fwd"),
    (2816, 144, 144, "attn proj fwd"),
    (2816, 144, 576, "fc fwd"),
    (2816, 576, 144, "mlp proj fwd"),
    (144, 2816, 432, "qkv dW (x^T dy)"),
    (576, 2816, 144, "mlp proj dW"),
    (2816, 432, 144, "qkv dx (dy W^T)"),
    (2048, 2048, 2048, "peak 2048"),
]

for m, k, n, what in SHAPES:
    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    best = float("inf")
    for _ in range(15):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    print(f"{what:18} {m}x{k}x{n}: {2 * m * k * n / best / 1e9:.0f} GFLOP/s")
