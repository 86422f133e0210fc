"""The products of gemm-shapes (shapes.txt, as src/main.rs times them) in PyTorch:
torch.mm, best of 15, in GFLOP/s.

    python3 benches/gemm-shapes/torch_mm.py
    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python3 benches/gemm-shapes/torch_mm.py
"""

import pathlib
import time

import torch

# (m, k, n, what): the 1M rung's products, the list src/main.rs reads too.
SHAPES = [
    (*map(int, line.split(maxsplit=3)[:3]), line.split(maxsplit=3)[3])
    for line in (pathlib.Path(__file__).parent / "shapes.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

for m, k, n, what in SHAPES:
    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    best = float("inf")
    for _ in range(15):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - start)
    print(f"{what:18} {m}x{k}x{n}: {2 * m * k * n / best / 1e9:.0f} GFLOP/s")
