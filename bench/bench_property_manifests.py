"""Benchmark: the property-based test of bad input at scale, run long. The valid example manifests are mutated
(fields dropped, retyped, renamed, nested, duplicated, random bytes) and loaded and validated; every case must end
in valid objects or problems that each name file:line, never an exception.

Run: python bench/bench_property_manifests.py [--cases N]
Prints the number of cases tried (valid / refused), the time per case, and as a baseline the time to load the
unmutated examples in the same run.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000, help="cases to try (default 5000)")
    args = ap.parse_args()
    os.environ["GITKUBE_PBT_EXAMPLES"] = str(args.cases)
    spec = importlib.util.spec_from_file_location("pbt", ROOT / "tests" / "unit" / "test_property_manifests.py")
    pbt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pbt)

    t0 = time.perf_counter()
    for _ in range(20):
        for p in pbt.EXAMPLES:
            pbt.check((p.name, p.read_bytes()))
    base = (time.perf_counter() - t0) / (20 * len(pbt.EXAMPLES))

    t0 = time.perf_counter()
    pbt.test_mutated_manifests_end_in_objects_or_located_problems()  # raises on the first failing case
    took = time.perf_counter() - t0
    n = sum(pbt.CASES.values())
    print(f"property cases tried: {n} ({pbt.CASES['valid']} valid, {pbt.CASES['refused']} refused with file:line), "
          f"0 exceptions")
    print(f"time: {took:.1f}s, {1000 * took / max(n, 1):.2f} ms per case (generation included); "
          f"baseline: {1000 * base:.2f} ms to load one unmutated example ({took / max(n, 1) / base:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
