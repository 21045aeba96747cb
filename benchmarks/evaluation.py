"""Time the generator-evaluation metrics on features of realistic size (issue 12's goal: metric computation for
10,000 vs 10,000 images of 2,048-d features under 5 s on a CPU; feature extraction is bound by the model).

    .venv/bin/python benchmarks/evaluation.py                     # 10,000 x 10,000, 2,048-d (Inception pool3)
    .venv/bin/python benchmarks/evaluation.py --n 2000 --dim 1024 # smaller

Features are drawn from two Gaussians with random covariances (what the metrics see is just arrays), so the
timings are those of the metrics, not of any model. Prints one markdown row per metric.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.metrics import fid_bootstrap, fid_from_features, fid_infinity, kid, prdc


def timed(label: str, function):
    started = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - started
    print(f"| {label} | {seconds:.2f} s | {result} |", flush=True)
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="images per set (default 10,000)")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2,048)")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples for the FID CI (default 20)")
    parser.add_argument("--skip-prdc", action="store_true")
    parser.add_argument("--skip-infinity", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    real = rng.normal(size=(args.n, args.dim)) @ mixing
    fake = (rng.normal(size=(args.n, args.dim)) + 0.05) @ (mixing * 1.02)
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}; {args.n:,} vs {args.n:,} features of {args.dim:,} dimensions\n"
    )
    print("| metric | time | result |")
    print("|---|---|---|")
    total = timed("FID", lambda: f"{fid_from_features(real, fake):.4f}")
    total += timed("KID (100 subsets of 1,000)", lambda: kid(real, fake))
    if not args.skip_prdc:
        total += timed("PRDC (k = 5)", lambda: prdc(real, fake, k=5))
    print(f"\nFID + KID{' + PRDC' if not args.skip_prdc else ''}: {total:.2f} s in all")
    if args.bootstrap:
        timed(
            f"FID bootstrap ({args.bootstrap} resamples)", lambda: fid_bootstrap(real, fake, resamples=args.bootstrap)
        )
    if not args.skip_infinity:
        timed("FID-infinity (15 sizes)", lambda: fid_infinity(real, fake))


if __name__ == "__main__":
    main()
