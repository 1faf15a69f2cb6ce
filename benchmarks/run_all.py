"""make bench: run every benchmarks/bench_*.py in one process tree, after
measuring the machine, and print each result beside its peer and roofline.

Quick by default (minutes); `--full` runs the full-size models (hours, and
needs the memory the benchmark states). Results are also written to
benchmarks/out/results.json for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="full-size runs")
    parser.add_argument("--only", help="run only benchmarks whose name contains this")
    args = parser.parse_args()

    import machine

    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    print("== machine")
    info = machine.describe(quick=not args.full)
    print(json.dumps(info, indent=2))
    results = {"machine": info, "benchmarks": {}}
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        if args.only and args.only not in script.stem:
            continue
        print(f"\n== {script.stem}", flush=True)
        command = [sys.executable, str(script)] + (["--full"] if args.full else [])
        started = time.perf_counter()
        completed = subprocess.run(command, text=True, capture_output=True)
        print(completed.stdout, end="")
        if completed.returncode != 0:
            failures += 1
            print(completed.stderr[-4000:], file=sys.stderr)
        results["benchmarks"][script.stem] = {
            "returncode": completed.returncode,
            "seconds": round(time.perf_counter() - started, 1),
            "stdout": completed.stdout,
        }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {out_dir / 'results.json'}; {failures} benchmark(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
