#!/usr/bin/env python3
"""Paired bars, bnf against native QEMU, one pair per scenario, from a
migration benchmark's runs.json (bench/migrate_bench.py).

  python3 bench/plot_pairs.py docs/bench/default              # back trips
  python3 bench/plot_pairs.py docs/bench/default --trip first

Writes DIR/<trip>-trip-pairs.svg and .png (gnuplot). The time axis is
logarithmic: over a shaped link a bnf back trip takes a small share of native's
time, and on a linear axis its bar would be a sliver beside native's. Above each pair: bnf's
median time as a share of native's, the figure the report's tables give."""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migbench import report  # noqa: E402  (the report's medians and formats, so the plot and the tables agree)

# Okabe-Ito blue and vermillion: distinct for colour-blind readers and in greyscale, legible on white.
COLOURS = {"bnf": "#0072B2", "native": "#D55E00"}
TITLES = {"bnf": "bnf", "native": "native QEMU 7.2 precopy"}
WIDTH = 0.38  # of one bar; a pair takes 0.76 of its scenario's slot


def load(out):
    with open(os.path.join(out, "runs.json")) as f:
        return json.load(f)["records"]


def pairs(records, trip):
    """(scenario, bnf median s, native median s, ratio text, bnf runs, native runs) for every scenario with both."""
    g = report.group(records)
    rows = []
    for sc in report.scenario_order(records):
        b, _, bn = report.stat(g, sc, "bnf", trip, "seconds")
        n, _, nn = report.stat(g, sc, "native", trip, "seconds")
        if b and n:
            rows.append((sc, b, n, report.fmt_pct(b / n), bn, nn))
    return rows


def label(sc):
    """Scenario id on two lines (RAM-workload, link-seconds on each host) so nine fit side by side."""
    parts = sc.split("-")
    return "-".join(parts[:2]) + "\\n" + "-".join(parts[2:])


def script(rows, trip, term, path):
    lo = min(min(r[1], r[2]) for r in rows)
    hi = max(max(r[1], r[2]) for r in rows)
    decade = 10 ** math.floor(math.log10(lo * 0.6))
    ymin = max(m * decade for m in (1, 2, 5) if m * decade <= lo * 0.6)  # a round floor below the shortest bar
    ymax = hi * 4  # room for the bar values and the ratio above the taller bar
    counts = [c for r in rows for c in r[4:6]]
    runs = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}–{max(counts)}"
    what = "Back trip (B → A)" if trip == "back" else "First trip (A → B)"
    # as in the report's first-trip table: native's clock starts at its migrate, its destination already listening
    clock = "" if trip == "back" else "; native from its migrate, its destination QEMU already listening"
    lines = [
        "set encoding utf8",
        f"set terminal {term}",
        f"set output '{path}'",
        f"set title \"{what}: median time until the VM runs on the destination, {runs} runs each\\n"
        f"(above each pair: bnf's time as a share of native's{clock})\"",
        "set logscale y",
        f"set yrange [{ymin:g}:{ymax:g}]",
        "set format y '%g'",
        "set ylabel 'seconds (log scale)'",
        "set bmargin 4",
        "set grid ytics mytics lc rgb '#d0d0d0'",
        f"set xrange [-0.6:{len(rows) - 0.4}]",
        "set xtics (" + ", ".join(f"\"{label(r[0])}\" {i}" for i, r in enumerate(rows)) + ") scale 0",
        "set key top left opaque box",
        "set style fill solid 0.9 border rgb '#404040'",
        "$bars << EOD",
    ]
    # x y xlow xhigh ylow yhigh: boxxyerror draws each bar from the axis floor, which histograms on a log axis do not
    for side, offset in (("bnf", -WIDTH / 2), ("native", WIDTH / 2)):
        for i, r in enumerate(rows):
            t = r[1] if side == "bnf" else r[2]
            x = i + offset
            lines.append(f"{side} {x:.3f} {t:.4f} {x - WIDTH / 2:.3f} {x + WIDTH / 2:.3f} {ymin:g} {t:.4f}")
    lines.append("EOD")
    lines.append("$ratio << EOD")
    for i, r in enumerate(rows):
        lines.append(f"{i} {max(r[1], r[2]) * 1.9:.4f} \"{{/:Bold {r[3]}}}\"")
    lines.append("EOD")
    plots = []
    for side in ("bnf", "native"):
        sel = f"(strcol(1) eq '{side}' ? $2 : NaN)"
        plots.append(f"$bars using {sel}:3:4:5:6:7 with boxxyerror lc rgb '{COLOURS[side]}' title '{TITLES[side]}'")
        plots.append(f"$bars using {sel}:($3 * 1.18):(sprintf('%.2f', $3)) with labels font ',9' "
                     "tc rgb '#303030' notitle")
    plots.append("$ratio using 1:2:3 with labels font ',12' tc rgb '#000000' notitle")
    lines.append("plot " + ", \\\n     ".join(plots))
    return "\n".join(lines) + "\n"


def plot(out, trip="back"):
    """Writes the plot's SVG and PNG into out; returns the files' names (none without gnuplot or data)."""
    if not shutil.which("gnuplot"):
        print("plot_pairs: gnuplot not found (scripts/install-deps.sh installs gnuplot-nox)", file=sys.stderr)
        return []
    if not os.path.exists(os.path.join(out, "runs.json")):
        print(f"plot_pairs: {out}/runs.json is missing", file=sys.stderr)
        return []
    rows = pairs(load(out), trip)
    if not rows:
        print(f"plot_pairs: no scenario in {out}/runs.json has both bnf's and native's {trip} trips",
              file=sys.stderr)
        return []
    made = []
    width = max(1000, 110 * len(rows) + 120)  # two-line scenario names stay apart in a larger set
    for term, ext in ((f"svg size {width},520 dynamic font 'sans,11'", "svg"),
                      (f"pngcairo size {width},520 font 'sans,10'", "png")):
        path = os.path.join(out, f"{trip}-trip-pairs.{ext}")
        run = subprocess.run(["gnuplot"], input=script(rows, trip, term, path), capture_output=True, text=True)
        if run.returncode == 0:
            made.append(os.path.basename(path))
        else:
            print(f"plot_pairs: gnuplot failed on {path}: {run.stderr.strip()}", file=sys.stderr)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="a benchmark's output folder (holds runs.json)")
    ap.add_argument("--trip", choices=("back", "first"), default="back", help="which trip's times to pair")
    a = ap.parse_args()
    made = plot(a.dir, a.trip)
    for f in made:
        print(os.path.join(a.dir, f))
    sys.exit(0 if made else 1)


if __name__ == "__main__":
    main()
