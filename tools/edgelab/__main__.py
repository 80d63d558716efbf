"""Edge lab: the engine across emulated hosts (network namespaces) and shaped links.

    python -m tools.edgelab list                       # the scenarios
    python -m tools.edgelab run lan wifi 4g            # run scenarios, print the table
    python -m tools.edgelab run all --long             # every scenario, 5x the images
    python -m tools.edgelab probe                      # measure each link profile
    python -m tools.edgelab report                     # the saved results as markdown tables
    python -m tools.edgelab up --worker 4g --worker lan   # build a lab and hold it (Ctrl-C ends)
    python -m tools.edgelab arm                        # an emulated arm64 worker (slow: builds a root)
    python -m tools.edgelab clean                      # remove leftovers of a killed run

Needs root, iproute2, nftables and iputils-ping. Hosts are namespaces elab<pid>-<name> on
one bridge (10.77.0.0/24, nothing else reachable); links are shaped by tbf (bandwidth)
and a userspace delay line (latency, jitter, loss: this kernel has no netem). Every run
tears down what it built, also on Ctrl-C, SIGTERM or an error; a SIGKILLed run's
leftovers are removed by the next run or by 'clean'. Results go to bench/results/edge/.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import ConfigError

from . import netns, probe
from .lab import Lab, _readline_within
from .links import PROFILES
from .runner import PY, RESULTS, run_scenario, save, table
from .scenarios import SCENARIOS

LONG_FACTOR = 5
PROBE_SECONDS = 3.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.edgelab", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n",
                                                     1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the scenarios and link profiles")
    r = sub.add_parser("run", help="run scenarios (names, or 'all'); prints the table, saves JSON")
    r.add_argument("names", nargs="+", help=f"scenarios: {', '.join(SCENARIOS)} or all")
    r.add_argument("--tasks", type=int, help="images per batch (default: the scenario's, 200-300)")
    r.add_argument("--long", action="store_true", help=f"{LONG_FACTOR}x the images, for steadier figures")
    r.add_argument("--no-save", action="store_true",
                   help="do not write bench/results/edge/<scenario>.json (<scenario>-long.json with --long)")
    sub.add_parser("probe", help="measure round trip, jitter, loss and capacity of each link profile")
    u = sub.add_parser("up", help="build a broker host, a client host and workers, and hold them until Ctrl-C")
    u.add_argument("--worker", action="append", default=[], choices=list(PROFILES),
                   help="a worker host behind this link profile (repeat)")
    a = sub.add_parser("arm", help="an emulated arm64 worker (debootstrap + qemu-user-static + pip install)")
    a.add_argument("--root", type=Path, default=Path("/var/tmp/edgelab-arm64"), help="the arm64 root file system")
    a.add_argument("--tasks", type=int, default=40, help="images in its batch (default: 40)")
    a.add_argument("--no-build", action="store_true", help="run with the root as it is")
    sub.add_parser("report", help="print the saved results (bench/results/edge/*.json) as markdown tables")
    c = sub.add_parser("clean", help="remove namespaces and cgroups left by killed runs")
    c.add_argument("--all", action="store_true", help="also those of a lab still running")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.cmd == "list":
            for sc in SCENARIOS.values():
                print(f"{sc.name:15} {sc.summary}")
            for spec in PROFILES.values():
                print(f"link {spec.describe()}")
        elif args.cmd == "run":
            names = list(SCENARIOS) if args.names == ["all"] else args.names
            unknown = [n for n in names if n not in SCENARIOS]
            if unknown:
                raise ConfigError(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)} or all")
            records = []
            for name in names:
                sc = SCENARIOS[name]
                tasks = args.tasks or (sc.tasks * LONG_FACTOR if args.long else None)
                rec = run_scenario(sc, tasks=tasks)
                records.append(rec)
                if not args.no_save:
                    save(rec, suffix="-long" if args.long else "")
                print(table([rec]).splitlines()[-1], flush=True)
            print(table(records))
        elif args.cmd == "probe":
            out = measure_links()
            print(json.dumps(out, indent=1))
            RESULTS.mkdir(parents=True, exist_ok=True)
            (RESULTS / "links.json").write_text(json.dumps(out, indent=1) + "\n")
        elif args.cmd == "up":
            hold(args.worker)
        elif args.cmd == "arm":
            from . import arm

            RESULTS.mkdir(parents=True, exist_ok=True)
            took = {} if args.no_build else arm.build(args.root, RESULTS / "arm-build.log")
            rec = {"build": took, **arm.run(args.root, args.tasks),
                   "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                   "loadavg": [round(x, 2) for x in os.getloadavg()]}
            (RESULTS / "arm.json").write_text(json.dumps(rec, indent=1) + "\n")
            print(json.dumps(rec, indent=1))
        elif args.cmd == "report":
            print(report())
        elif args.cmd == "clean":
            for what in netns.sweep(everything=args.all):
                print("removed", what)
    except ConfigError as exc:
        print(f"edgelab: {exc}", file=sys.stderr)
        return 2
    return 0


def report() -> str:
    """The saved scenario results as one table (scenario order, then the -long runs) and
    the saved link measurements as another."""
    records = []
    for suffix in ("", "-long"):
        for name in SCENARIOS:
            path = RESULTS / f"{name}{suffix}.json"
            if path.exists():
                rec = json.loads(path.read_text())
                rec["scenario"] += suffix
                records.append(rec)
    out = [table(records)] if records else []
    links = RESULTS / "links.json"
    if links.exists():
        d = json.loads(links.read_text())
        out.append("| link | stated | RTT min/avg/max ms | RTT mdev ms | round trips lost | up Mbit/s | down Mbit/s |\n"
                   "|---|---|---|---|---|---|---|")
        for name in PROFILES:
            rec, p = d[name], d[name]["ping"]
            out.append(f"| {name} | {rec['spec'].split(': ', 1)[1]} | {p['rtt_min_ms']}/{p['rtt_avg_ms']}/"
                       f"{p['rtt_max_ms']} | {p['rtt_mdev_ms']} | {p['loss_pct']} % of {p['pings']} | "
                       f"{rec.get('up_mbit_s', '-')} | {rec.get('down_mbit_s', '-')} |")
        out.append(f"\n(measured {d['date_utc']} UTC, load average {d['loadavg_before'][0]}-{d['loadavg_after'][0]} "
                   f"on {d['cpus']} CPUs)")
    return "\n\n".join(out[:1] + ["\n".join(out[1:])]) if out else "no results saved yet"


def measure_links() -> dict:
    """Each profile: 500 pings (round trip, jitter, loss) and a UDP stream each way."""
    out: dict = {"loadavg_before": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
                 "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")}
    with Lab() as lab:
        lab.add_host("ref")
        for name, spec in PROFILES.items():
            lab.add_host(name.replace("4g", "g4"), spec)
        for name, spec in PROFILES.items():
            host = name.replace("4g", "g4")
            rec = {"spec": spec.describe(), "ping": probe.ping(lab.hosts["ref"].ns, lab.addr(host), count=500,
                                                               interval_s=0.01)}
            if spec.rate_mbit:
                offered = spec.rate_mbit * 1.5
                rec["up_mbit_s"] = _udp(lab, host, "ref", offered)
                rec["down_mbit_s"] = _udp(lab, "ref", host, offered)
            out[name] = rec
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _udp(lab: Lab, src: str, dst: str, mbit_s: float) -> float:
    sink = lab.spawn(dst, [PY, "-m", "tools.edgelab.probe", "sink", "--port", "5999"], f"sink-{dst}",
                     stdout=subprocess.PIPE)
    if _readline_within(sink, 10).strip() != "ready":
        raise ConfigError("the UDP sink did not start")
    src_proc = lab.spawn(src, [PY, "-m", "tools.edgelab.probe", "source", "--to", f"{lab.addr(dst)}:5999",
                               "--mbit-s", str(mbit_s), "--seconds", str(PROBE_SECONDS)], f"source-{src}",
                         stdout=subprocess.PIPE)
    src_proc.wait(PROBE_SECONDS + 30)
    return json.loads(_readline_within(sink, 30))["mbit_s"]


def hold(workers: list[str]) -> None:
    with Lab() as lab:
        lab.add_host("broker")
        lab.add_host("client")
        for i, link in enumerate(workers, 1):
            lab.add_host(f"w{i}", PROFILES[link])
        print("hosts (run commands in one with: ip netns exec NAMESPACE ...):")
        for h in lab.hosts.values():
            print(f"  {h.name:8} {h.ns:22} {h.addr:12} {h.link.describe()}")
        print(f"e.g. ip netns exec {lab.hosts['broker'].ns} {PY} -m engine.broker --public")
        print("Ctrl-C tears everything down.", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
