"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import platform
import sys
import time

import torch
from wcembed import ROOT

OUT = ROOT / "outputs" / "benchmarks"
sys.path.insert(0, str(ROOT / "tests"))  # the test servers (tests/local_servers.py) serve the benchmarks too


def sample_root() -> str:
    """The sample region under outputs/sample (built if missing)."""
    from wcembed.tools.sample import build_sample_region

    root = OUT.parent / "sample"
    if not list(root.glob("rgbnir/2020/*/*.tif")):
        build_sample_region(root, years=(2020,))
    return str(root)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def report(name: str, result: dict) -> None:
    result = {
        "benchmark": name,
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        **result,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:>{width}}: {v:.4g}" if isinstance(v, float) else f"{k:>{width}}: {v}")
