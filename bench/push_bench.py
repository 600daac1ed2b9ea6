#!/usr/bin/env python3
"""Image push benchmark: bnf full and incremental pushes beside a plain TCP
baseline (iperf3, one stream) measured in the same run on the same machine.

  bench/push_bench.py [--bnf build/bnf] [--size 1G] [--repeat 3] [--out bench/out]

Writes push-bench.json and push-bench.md into --out and prints the table.
Ratios matter, not absolute numbers: these machines are noisy.
"""
import argparse, json, os, platform, re, shutil, socket, statistics, subprocess, sys, tempfile, time


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def iperf3_gbit(seconds):
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", "5299"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        out = json.loads(run(["iperf3", "-c", "127.0.0.1", "-p", "5299", "-t", str(seconds), "-J"]).stdout)
        return out["end"]["sum_received"]["bits_per_second"] / 1e9
    finally:
        server.wait(timeout=10)


def tcp_copy_gbit(img, dest):
    """A plain TCP copy of the image over loopback into a fresh tmpfs file: the
    baseline that, like a push, pays for allocating the receiving pages."""
    server = subprocess.Popen([sys.executable, "-c", """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 5298)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); view = memoryview(buf)
with open(sys.argv[1], "wb", buffering=0) as f:
    while True:
        n = c.recv_into(buf)
        if n == 0: break
        f.write(view[:n])
""", dest], stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    size = os.path.getsize(img)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", 5298)) as c, open(img, "rb") as f:
        c.sendfile(f)
    server.wait(timeout=120)
    secs = time.perf_counter() - t0
    os.unlink(dest)
    return size * 8 / secs / 1e9


def start_daemon(bnf, state, log, *extra):
    p = subprocess.Popen([bnf, "daemon", "--state-dir", state, "--listen", "bnf+tcp:127.0.0.1:0",
                          "--peer-key", state + "/peer.key", *extra],
                         stderr=open(log, "w"))
    for _ in range(200):
        m = re.search(r"listening on (bnf\+tcp:\S+)", open(log).read())
        if m:
            return p, m.group(1)
        time.sleep(0.05)
    raise SystemExit("daemon did not start: " + open(log).read())


def push(bnf, img, uri, *extra):
    key = os.path.dirname(img) + "/state/peer.key"  # the daemon's (start_daemon), beside the image
    return json.loads(run([bnf, "image", "push", img, "--peer-key", key, "--name", "bench", "--to", uri, "--json",
                           *extra]).stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bnf", default="build/bnf")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--percent", type=float, default=1.0)
    ap.add_argument("--out", default="bench/out")
    a = ap.parse_args()
    bnf = os.path.abspath(a.bnf)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bnf-bench-", dir="/dev/shm")
    os.environ["XDG_STATE_HOME"] = work + "/xdg"
    img = work + "/vm.img"
    runs = {"iperf3_gbit": [], "tcp_copy_gbit": [], "full_1": [], "full_2": [], "incr_bitmap": [], "incr_digest": []}
    daemon = None
    try:
        run([bnf, "image", "make", img, "--size", a.size, "--zero-percent", "0"])
        daemon, uri = start_daemon(bnf, work + "/state", work + "/daemon.log")
        for i in range(a.repeat):
            runs["iperf3_gbit"].append(iperf3_gbit(3))
            runs["tcp_copy_gbit"].append(tcp_copy_gbit(img, work + "/copy.img"))
            for streams in (1, 2):
                runs[f"full_{streams}"].append(push(bnf, img, uri, "--full", "--streams", str(streams)))
            out = run([bnf, "image", "mutate", img, "--percent", str(a.percent), "--seed", str(100 + i),
                       "--bitmap-out", work + "/dirty.bm"]).stdout
            changed = int(out.split()[1])
            r = push(bnf, img, uri, "--dirty-bitmap", work + "/dirty.bm")
            r["changed_pages"] = changed
            runs["incr_bitmap"].append(r)
            out = run([bnf, "image", "mutate", img, "--percent", str(a.percent), "--seed", str(200 + i)]).stdout
            r = push(bnf, img, uri)
            r["changed_pages"] = int(out.split()[1])
            runs["incr_digest"].append(r)
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)

    iperf = med(runs["iperf3_gbit"])
    tcp_copy = med(runs["tcp_copy_gbit"])
    rows = []
    full_secs = med([r["seconds"] for r in runs["full_1"]])
    for key, label in (("full_1", "full push, 1 stream"), ("full_2", "full push, 2 streams"),
                       ("incr_bitmap", f"incremental {a.percent}%, --dirty-bitmap"),
                       ("incr_digest", f"incremental {a.percent}%, digest scan")):
        rs = runs[key]
        secs = [r["seconds"] for r in rs]
        gbit = [r["payload_bytes"] * 8 / r["seconds"] / 1e9 for r in rs]
        row = {"case": label, "seconds_median": med(secs), "seconds_min_max": spread(secs),
               "payload_gbit_median": med(gbit), "ratio_to_iperf3": med(gbit) / iperf,
               "ratio_to_tcp_copy": med(gbit) / tcp_copy,
               "time_vs_full_push": med(secs) / full_secs,
               "wire_bytes_median": med([r["wire_bytes"] for r in rs]),
               "phases_median": {p: med([r["phases"][p] for r in rs]) for p in rs[0]["phases"]}}
        if "changed_pages" in rs[0]:
            row["wire_over_changed_bytes"] = med([r["wire_bytes"] / (r["changed_pages"] * 4096) for r in rs])
        rows.append(row)
    report = {"machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                          "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
              "image_size": a.size, "repeat": a.repeat, "iperf3_gbit_median": iperf, "tcp_copy_gbit_median": tcp_copy,
              "iperf3_gbit_all": runs["iperf3_gbit"], "rows": rows, "raw": runs}
    with open(os.path.join(a.out, "push-bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"Image {a.size} of random pages, median of {a.repeat} (min-max); {os.cpu_count()} cores, kernel "
             f"{platform.release()}. Baselines in the same run on loopback: iperf3 one stream {iperf:.2f} Gbit/s; "
             f"plain TCP copy into a fresh tmpfs file {tcp_copy:.2f} Gbit/s.", "",
             "| case | seconds | page Gbit/s | vs iperf3 | vs TCP copy | time vs full | wire/changed bytes | phases (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ph = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_median"].items())
        lo, hi = r["seconds_min_max"]
        wc = f"{r['wire_over_changed_bytes']:.3f}" if "wire_over_changed_bytes" in r else "-"
        lines.append(f"| {r['case']} | {r['seconds_median']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{r['payload_gbit_median']:.2f} | {r['ratio_to_iperf3']:.0%} | {r['ratio_to_tcp_copy']:.0%} | "
                     f"{r['time_vs_full_push']:.1%} | "
                     f"{wc} | {ph} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "push-bench.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
