"""python bench/report.py: markdown tables and PNG charts from the stored results.

Reads every JSON under bench/results/<target>/ (or --results), takes the latest run per
target, mode and worker count, and writes REPORT.md plus, per target,
throughput_vs_workers.png and latency.png. For the committed bench/results/ they go to a
scratch folder unless --publish is given; for another --results folder, beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SCRATCH = Path(tempfile.gettempdir()) / "engine_bench_report"
REFERENCE = "engine"
ORDER = ("engine", "limit", "mp_pool", "compat", "celery", "dask", "ray")


def load(folder: Path) -> dict[str, dict[tuple[str, int], dict]]:
    """target -> (mode, workers) -> the latest result."""
    out: dict[str, dict[tuple[str, int], dict]] = {}
    for path in sorted(folder.glob("*/*.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        if not isinstance(result, dict) or result.get("target") != path.parent.name or "mode" not in result:
            continue  # not a run of its folder's target (datapath/, http/, edge/ hold other records)
        key = (result["mode"], result["settings"]["workers"])
        runs = out.setdefault(result["target"], {})
        if key not in runs or result["started_at"] >= runs[key]["started_at"]:
            runs[key] = result
    return out


def _peers(result: dict) -> list[str]:
    ran = [p for p, s in result["peers"].items() if s.get("status") == "ran"]
    return sorted(ran, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))


def _val(x) -> str:
    return "–" if x is None else str(x)


def _row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


def _by_cell(result: dict) -> dict[tuple[str, str], dict[str, dict]]:
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for r in result["results"]:
        out.setdefault((r["workload"], r["size"]), {})[r["peer"]] = r
    return out


def engine_table(result: dict) -> list[str]:
    rows = []
    for (workload, size), peers in _by_cell(result).items():
        r = peers.get(REFERENCE)
        if not r:
            continue
        lat, cpu = r["latency_ms"], r["cpu_cores"]
        rows.append([workload, size, f"{r['images_per_s']:.1f}", f"{r['mp_per_s']:.1f}",
                     f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}",
                     " / ".join(f"{cpu[k]:.2f}" if k in cpu else "–"
                                for k in ("broker", "supervisor", "workers", "client")),
                     _val(r["broker_cpu_us_per_task"])])
    return _table(["workload", "size", "images/s", "MP/s", "latency p50 / p95 / p99 ms",
                   "CPU cores broker / worker supervisor / pool / client", "broker CPU µs/task"], rows)


def ratio_table(result: dict) -> list[str]:
    peers = [p for p in _peers(result) if p != REFERENCE]
    rows = []
    for (workload, size), cell in _by_cell(result).items():
        rows.append([workload, size, *(f"{cell[p]['ratio_to_engine']:.2f}×" if p in cell and
                                       cell[p].get("ratio_to_engine") else "–" for p in peers)])
    return _table(["workload", "size", *peers], rows)


def ratio_summary(result: dict) -> list[str]:
    """A few lines for the end of a run: each system's images/s as a ratio to the engine's."""
    peers = [p for p in _peers(result) if p != REFERENCE]
    engine = {cell: r[REFERENCE]["images_per_s"] for cell, r in _by_cell(result).items() if REFERENCE in r}
    if not engine:
        return ["", "The engine did not run, so there are no ratios to show."]
    rows = []
    for (workload, size), cell in _by_cell(result).items():
        if (workload, size) in engine:
            rows.append([workload, size, f"{engine[(workload, size)]:.1f}",
                         *(f"{cell[p]['ratio_to_engine']:.2f}" if p in cell and cell[p].get("ratio_to_engine")
                           else "–" for p in peers)])
    head = ["workload", "size", "engine img/s", *peers]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i > 1 else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    skipped = [f"{p} ({v.get('reason') or v.get('status')})" for p, v in result["peers"].items()
               if v.get("status") != "ran"]
    out = ["", f"images/s of each system as a ratio to this engine ({result['settings']['workers']} worker(s); "
               "above 1: faster than the engine; limit: plain processes, no messaging):", "",
           line(head), *(line(r) for r in rows)]
    if skipped:
        out += ["", "not measured: " + "; ".join(skipped)]
    return out


def overhead_table(result: dict) -> list[str]:
    def ms(value) -> str:
        return "–" if value is None else f"{value:.2f}"

    rows = []
    for peer in _peers(result):
        rt = result["peers"][peer].get("round_trip")
        if not rt:
            continue
        latency = [ms(rt.get(f"latency_ms_p{q}")) for q in (50, 95, 99)]
        if rt.get("overhead_ms_p50") is None:
            rows.append([peer, *latency, "–", "– (its replies carry no pipeline time)", "–"])
        else:
            rows.append([peer, *latency, ms(rt.get("pipeline_ms_p50")), ms(rt["overhead_ms_p50"]),
                         ms(rt["overhead_ms_p95"])])
    return _table(["peer", "latency p50 ms", "p95", "p99", "pipeline's own p50 ms", "added to the pipeline p50 ms",
                   "added p95 ms"], rows)


def capacity_table(result: dict) -> list[str]:
    cap = result.get("capacity") or {}
    rows = []
    for name in ("tiny_real", "echo_tiny", "echo_10mb"):
        c = cap.get(name)
        if not c:
            continue
        if "tasks_per_s" not in c:
            rows.append([name, c.get("status", "?"), c.get("reason", ""), "", "", "", ""])
            continue
        rows.append([name, c["payload_bytes"], f"{c['tasks_per_s']:.0f}", f"{c['gb_per_s_through_broker']:.3f}",
                     f"{c['cpu_cores'].get('broker', 0):.2f}", _val(c["broker_cpu_us_per_task"]),
                     _val(c["implied_broker_tasks_per_s"])])
    lines = _table(["run", "payload bytes", "tasks/s", "GB/s in+out", "broker cores", "broker CPU µs/task",
                    "tasks/s per broker core (extrapolated)"], rows)
    return lines + [f"\n{n}" for n in cap.get("notes", [])]


def losses(result: dict) -> list[str]:
    """Every cell where another system (not the limit, not the engine with CURVE) beats this engine."""
    out = []
    for (workload, size), cell in _by_cell(result).items():
        for peer, r in cell.items():
            if peer not in (REFERENCE, "limit", "engine_curve") and (r.get("ratio_to_engine") or 0) > 1.0:
                out.append(f"- {workload} / {size}: {peer} does {r['ratio_to_engine']:.2f}× the engine's images/s")
    return out or ["- none in this run"]


def section(result: dict) -> list[str]:
    fp = result["fingerprint"]
    s = result["settings"]
    skipped = [f"{p} ({v.get('status')}: {v.get('reason')})" for p, v in result["peers"].items()
               if v.get("status") != "ran"]
    lines = [f"### {result['target']}: {result['mode']} run, {s['workers']} worker(s), {result['started_at']}", "",
             f"{fp['cpu_model']}, {fp['usable_cores']} usable cores, {fp['memory_gib']} GiB, {fp['os']}, "
             f"{fp['python']}; SIMD {' '.join(fp['simd']) or 'unknown'}; "
             + ", ".join(f"{k} {v}" for k, v in fp["versions"].items() if v != "unknown"), "",
             f"Command: `{result['command']}`; window {s['window']} tasks in flight, {s['duration_s']} s per cell, "
             f"{s.get('repeat', 1)} round(s) (median shown), {s['clients']} engine client process(es).", ""]
    if skipped:
        lines += ["Not run: " + "; ".join(skipped), ""]
    lines += ["**This engine**", "", *engine_table(result), "",
              "**Other systems as a ratio to this engine** (images/s; above 1 means faster than the engine; "
              "`limit` is the machine's ceiling)", "", *ratio_table(result), "",
              "**Where the engine loses** (to another system; the limit and engine_curve excluded)", "",
              *losses(result), "",
              "**Round trip, one task at a time** (latency minus the pipeline's own time)", "",
              *overhead_table(result), ""]
    if result.get("capacity"):
        lines += ["**Broker capacity**", "", *capacity_table(result), ""]
    return lines


def _style(peer: str) -> dict:
    """The same colour for a peer in every chart; the engine drawn thicker."""
    index = ORDER.index(peer) if peer in ORDER else len(ORDER)
    return {"label": peer, "color": f"C{index % 10}", "linewidth": 2.5 if peer == REFERENCE else 1.2}


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def charts(target: str, runs: dict[tuple[str, int], dict], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    mode = "full" if any(m == "full" for m, _ in runs) else "quick"
    chosen = {w: r for (m, w), r in sorted(runs.items()) if m == mode}
    workloads = sorted({(r["workload"], r["size"]) for res in chosen.values() for r in res["results"]})
    if not workloads:
        return made
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.2 * len(workloads), 3.4), squeeze=False)
    for ax, (workload, size) in zip(axes[0], workloads):
        peers = sorted({r["peer"] for res in chosen.values() for r in res["results"]},
                       key=lambda p: ORDER.index(p) if p in ORDER else 99)
        for peer in peers:
            pts = [(w, r["images_per_s"]) for w, res in chosen.items() for r in res["results"]
                   if r["peer"] == peer and r["workload"] == workload and r["size"] == size]
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="o", **_style(peer))
        ax.set_title(f"{workload} / {size}", fontsize=9)
        ax.set_xlabel("worker processes")
        ax.set_xticks(sorted(chosen))
    axes[0][0].set_ylabel("images/s")
    _legend(axes[0][-1])
    fig.suptitle(f"{target}: throughput against worker count ({mode} runs)", fontsize=10)
    fig.tight_layout()
    made.append(folder / "throughput_vs_workers.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)

    latest = chosen[max(chosen)]
    cells = sorted({(r["workload"], r["size"]) for r in latest["results"]})
    fig, axes = plt.subplots(1, len(cells), figsize=(3.2 * len(cells), 3.4), squeeze=False)
    for ax, (workload, size) in zip(axes[0], cells):
        for r in latest["results"]:
            q = r["latency_ms"].get("quantiles")
            if r["workload"] == workload and r["size"] == size and q:
                ax.plot(q, [i / (len(q) - 1) for i in range(len(q))], **_style(r["peer"]))
        ax.set_xscale("log")
        ax.set_title(f"{workload} / {size}", fontsize=9)
        ax.set_xlabel("latency ms (log)")
    axes[0][0].set_ylabel("fraction of tasks")
    _legend(axes[0][-1])
    fig.suptitle(f"{target}: latency distribution at {latest['settings']['window']} tasks in flight, "
                 f"{max(chosen)} workers", fontsize=10)
    fig.tight_layout()
    made.append(folder / "latency.png")
    fig.savefig(made[-1], dpi=110)
    plt.close(fig)
    return made


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of <target>/*.json [bench/results]")
    p.add_argument("--out", type=Path, help=f"folder to write REPORT.md and the charts into [beside --results, "
                                            f"but {SCRATCH} for the committed bench/results]")
    p.add_argument("--publish", action="store_true",
                   help="update the committed report: bench/results/REPORT.md and its charts")
    p.add_argument("--no-charts", action="store_true", help="tables only (no matplotlib needed)")
    args = p.parse_args(argv)
    targets = load(args.results)
    if not targets:
        print(f"no results under {args.results}: run python bench/run.py first", file=sys.stderr)
        return 1
    committed = args.results.resolve() == RESULTS.resolve()
    folder = args.out or (SCRATCH if committed and not args.publish else args.results)
    lines = ["# Benchmark results", "", "Made by `python bench/report.py --publish` from the JSON files beside it; "
             "how to read them: docs/benchmarks.md.", ""]
    for target, runs in sorted(targets.items()):
        lines += [f"## {target}", ""]
        if not args.no_charts:
            try:
                (folder / target).mkdir(parents=True, exist_ok=True)
                for png in charts(target, runs, folder / target):
                    lines.append(f"![{png.stem}]({png.relative_to(folder).as_posix()})")
                lines.append("")
            except ImportError:
                lines += ["(charts need matplotlib: pip install .[bench])", ""]
        for key in sorted(runs, key=lambda k: (k[0] != "full", k[1])):
            lines += section(runs[key])
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "REPORT.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}" + (" (scratch; --publish updates bench/results/REPORT.md)" if folder == SCRATCH else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
