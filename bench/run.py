"""python bench/run.py: measure the engine and the systems users would pick instead.

examples:
    python bench/run.py --workers 2 --quick        # under a minute; JSON to a scratch folder
    python bench/run.py --workers 1,2              # full mode, two worker counts; JSON to bench/results/
    python bench/run.py --broker tcp://host:5555   # an existing deployment
    python bench/report.py                         # tables and charts (to a scratch folder)

It ends with a table of each system's images/s as a ratio to this engine's (above 1: faster).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Every system gets what the engine's workers have: one process per core, OpenCV with one
# thread. Set before OpenCV is imported anywhere, and inherited by every peer's processes
# (limit, multiprocessing, Celery, Dask and Ray workers). Without it each plain process
# would also start a thread per core and they would compete for the same cores.
os.environ.setdefault("OPENCV_FOR_THREADS_NUM", "1")

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import workloads as W
from bench.cli import comma_list, positive_ints
from bench.harness import PEERS, Settings, run_all, save
from bench.report import ratio_summary

QUICK = {"duration_s": 0.6, "sizes": ["photo"], "probe_tasks": 8, "capacity_duration_s": 0.6}
SCRATCH = Path(tempfile.gettempdir()) / "engine_bench"  # quick runs: not the committed bench/results/


def parse_args(argv=None) -> argparse.Namespace:
    title, _, rest = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(prog="python bench/run.py", description=title.split(": ", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=rest)
    p.add_argument("--workers", type=positive_ints, default=[2],
                   help="worker processes per system; a list sweeps (1,2,4)")
    p.add_argument("--clients", type=int, default=1, help="client processes driving the engine [1]")
    p.add_argument("--broker", help="measure an existing deployment at this front endpoint instead of "
                                    "starting one (only the engine peer runs unless --peers says more)")
    p.add_argument("--quick", action="store_true", help="photo-size images, short runs: under a minute")
    p.add_argument("--duration-s", type=float, help="measured seconds per workload and peer [full 5, quick 0.6]")
    p.add_argument("--window", type=int, default=0, help="tasks in flight across clients [16 per worker]")
    p.add_argument("--peers", type=comma_list, help=f"comma list from {', '.join(PEERS)} [all]")
    p.add_argument("--workloads", type=comma_list, default=list(W.PIPELINES), help="comma list [all]")
    p.add_argument("--sizes", type=comma_list, help=f"comma list from {', '.join(W.SIZES)} [full: all, quick: photo]")
    p.add_argument("--repeat", type=int, default=1, help="rounds over all peers, each figure the median "
                                                         "round: for a machine that is not idle [1]")
    p.add_argument("--no-capacity", action="store_true", help="skip the broker capacity runs")
    p.add_argument("--target", help="results folder name under bench/results [from the CPU, e.g. x86_64-2core]")
    p.add_argument("--out", type=Path, help="write the JSON into this folder [full: bench/results/<target>, "
                                            f"quick: {SCRATCH}/<target>]")
    args = p.parse_args(argv)
    bad = [x for x in (args.peers or []) if x not in PEERS] + [x for x in args.workloads if x not in W.PIPELINES]
    bad += [x for x in (args.sizes or []) if x not in W.SIZES]
    if bad:
        p.error(f"unknown name(s): {', '.join(bad)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    quick = QUICK if args.quick else {}
    peers = args.peers or (["engine"] if args.broker else list(PEERS))
    for workers in args.workers:
        settings = Settings(workers=workers, clients=args.clients, window=args.window,
                            duration_s=args.duration_s or quick.get("duration_s", 5.0),
                            probe_tasks=quick.get("probe_tasks", 200), workloads=args.workloads,
                            sizes=args.sizes or quick.get("sizes", list(W.SIZES)), peers=peers,
                            broker=args.broker, capacity=not args.no_capacity, repeat=max(1, args.repeat),
                            capacity_duration_s=quick.get("capacity_duration_s", 3.0),
                            mode="quick" if args.quick else "full")
        result = run_all(settings, target=args.target, argv=["python", "bench/run.py", *(argv or sys.argv[1:])])
        out = args.out or (SCRATCH / result["target"] if args.quick else None)
        path = save(result, out)
        print("\n".join(ratio_summary(result)))
        print(f"\nwrote {path}" + (" (a quick run: scratch, not bench/results/)" if out and args.quick and
                                   not args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
