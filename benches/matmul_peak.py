"""The device's matrix-multiply rate as PyTorch reaches it: the yardstick for "share of peak".

    python3 benches/matmul_peak.py [--device cuda] [--n 8192]

Times an n x n x n product in float32 (PyTorch's default: full float32, no TF32), in float32
with TF32 allowed, and in bfloat16: 3 untimed products, then --reps timed ones, waiting for the
device before and after. Prints one JSON object per precision (precision, n, tflops, device).
elab trains in float32 without tensor cores (WGSL on wgpu), so `benches/gpu-check.sh` takes
the float32 figure as its peak; the others say how far tensor cores would go.
"""

import argparse
import json
import sys
import time

try:
    import torch
except ImportError:
    print("PyTorch is not installed", file=sys.stderr)
    sys.exit(3)


def rate(n, dtype, tf32, reps, device):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    seconds = (time.perf_counter() - start) / reps
    return 2 * n**3 / seconds / 1e12


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=8192, help="matrix side")
    ap.add_argument("--reps", type=int, default=10, help="timed products per precision")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    precisions = [("float32", torch.float32, False), ("tf32", torch.float32, True)]
    precisions.append(("bfloat16", torch.bfloat16, False))
    for label, dtype, tf32 in precisions:
        tflops = rate(args.n, dtype, tf32, args.reps, device)
        row = dict(precision=label, n=args.n, tflops=float(f"{tflops:.4g}"), device=name)
        print(json.dumps(row), flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False


if __name__ == "__main__":
    main()
