#!/usr/bin/env python3
"""Back-and-forth migration benchmark: bnf against native QEMU on the same VMs,
links and workloads, in the same run. See bench/README.md.

  python3 bench/migrate_bench.py --quick --out bench/out/quick
  python3 bench/migrate_bench.py --full --repeat 5 --out bench/out/full
  python3 bench/migrate_bench.py --report bench/out/quick     # redo the report only

Writes runs.json, runs.csv, report.md and plots (SVG + PNG, gnuplot) to --out,
among them back-trip-pairs (bench/plot_pairs.py)."""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migbench import guest, host, report, scenarios  # noqa: E402
from migbench.strategies import Bnf, NativeQemu, QemuFloor  # noqa: E402
import plot_pairs  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the quick set (default; minutes on 2 cores)")
    size.add_argument("--full", action="store_true", help="the full set (adds 4 GiB, 50%% hot, time on B)")
    ap.add_argument("--out", default="bench/out/quick", help="output directory")
    ap.add_argument("--repeat", type=int, default=3, help="runs per point (median and spread are reported)")
    ap.add_argument("--only", default="", help="run scenarios whose id contains this text")
    ap.add_argument("--bnf", default=os.path.join(guest.BUILD, "bnf"), help="the bnf binary")
    ap.add_argument("--strategies", default="", help="comma-separated subset (qemu-floor,native,native-default,bnf,"
                    "bnf-shared, bnf-check-off, bnf-relay, bnf-untracked, bnf-tracked, bnf-unencrypted: run only when named); with --keep, the other strategies' runs in --out are kept")
    ap.add_argument("--keep", action="store_true", help="keep --out's runs of strategies and scenarios not run now")
    ap.add_argument("--link-timeline", action="store_true",
                    help="sample the source host's link every ~0.5 ms during each trip: when the stream starts "
                    "and ends on the wire, its pauses (report: \"On the link\")")
    ap.add_argument("--report", metavar="DIR", help="only rebuild the report from DIR/runs.json")
    return ap.parse_args()


def run_point(strategy, sc, rep, records, out):
    with host.Link(sc["link"]) as link:
        work = tempfile.mkdtemp(prefix="bnf-bench-", dir="/dev/shm")
        try:
            t = time.time()
            trips = strategy.run(sc, link, work)
            status = "ok"
        except Exception as e:  # one failed point is reported, the matrix goes on
            trips, status = [], f"error: {e}"
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for trip in trips or [{"trip": "-"}]:
        records.append({"scenario": sc["id"], **{k: sc[k] for k in ("memory_mib", "workload", "link",
                                                                    "time_on_b", "streams")},
                        "strategy": strategy.name, "repeat": rep, "status": status, **trip})
    summary = ", ".join(f"{t['trip']} {t.get('seconds', '?')} s" for t in trips) or status
    print(f"  {strategy.name:<15} #{rep}: {summary}  ({time.time() - t:.0f} s)", flush=True)
    with open(os.path.join(out, "runs.json"), "w") as f:  # after every point: a stopped run keeps its data
        json.dump({"machine": host.machine(), "records": records}, f, indent=1)


def write_report(out):
    report.write(out)
    plot_pairs.plot(out)  # without gnuplot it says so and makes nothing; the report stands either way


def main():
    a = parse_args()
    if a.report:
        write_report(a.report)
        return
    if os.geteuid() != 0:
        sys.exit("migrate_bench: needs root (network namespaces, tc)")
    for path in (a.bnf, guest.MEMCHECK, guest.CHECKER):
        if not os.path.exists(path):
            sys.exit(f"migrate_bench: {path} is missing: build first (scripts/build.sh)")
    os.makedirs(a.out, exist_ok=True)
    rows = scenarios.FULL if a.full else scenarios.QUICK
    points = [sc for sc in scenarios.expand(rows) if a.only in sc["id"]]
    if not guest.linux_available():
        print("note: no Linux test guest built (tests/guest/linux; needs linux-image-cloud-amd64): "
              "skipping its scenarios", file=sys.stderr)
        points = [sc for sc in points if sc["workload"] != "linux"]
    chosen = set(filter(None, a.strategies.split(",")))
    records = []
    if a.keep and os.path.exists(os.path.join(a.out, "runs.json")):
        with open(os.path.join(a.out, "runs.json")) as f:
            ids = {sc["id"] for sc in points}  # only the points run now are replaced
            records = [r for r in json.load(f)["records"]
                       if chosen and (r["strategy"] not in chosen or r["scenario"] not in ids)]
    t0 = time.time()
    for sc in points:
        print(f"== {sc['id']}", flush=True)
        key = (sc["memory_mib"], sc["workload"], sc["link"], sc["time_on_b"])
        strategies = [QemuFloor(), NativeQemu(), Bnf(a.bnf), Bnf(a.bnf, mode="shared")]
        if key in scenarios.NATIVE_DEFAULT:
            strategies.insert(2, NativeQemu(tuned=False))
        if key in scenarios.BNF_CHECK_OFF or "bnf-check-off" in chosen:
            strategies.append(Bnf(a.bnf, switchover_check="off"))
        if "bnf-relay" in chosen:  # only when asked for: full trips relayed, to compare with direct
            strategies.append(Bnf(a.bnf, relay=True))
        if "bnf-untracked" in chosen:  # only when asked for: the switchover check without QEMU's writes tracked
            strategies.append(Bnf(a.bnf, write_tracker="off"))
        if "bnf-tracked" in chosen:  # only when asked for: relayed (back) trips track QEMU's writes too
            strategies.append(Bnf(a.bnf, write_tracker="on"))
        if "bnf-unencrypted" in chosen:  # only when asked for: both daemons with --encryption off (integrity only)
            strategies.append(Bnf(a.bnf, encryption="off"))
        if chosen:
            strategies = [s for s in strategies if s.name in chosen]
        for s in strategies:
            s.timeline = a.link_timeline
        for rep in range(a.repeat):
            for s in strategies:
                run_point(s, sc, rep, records, a.out)
    print(f"== {len(points)} scenarios in {time.time() - t0:.0f} s")
    write_report(a.out)


if __name__ == "__main__":
    main()
