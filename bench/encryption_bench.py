#!/usr/bin/env python3
"""What the secure channel costs an image push: full pushes over loopback,
encrypted (AES-256-GCM, the default) and integrity only (--encryption off on
both ends), alternating in the same run against one daemon.

  bench/encryption_bench.py [--bnf build-release/bnf] [--size 1G] [--repeat 5] [--out bench/out]

Writes encryption-bench.json and encryption-bench.md into --out and prints
the table. The ratio matters, not the absolute times: these machines are noisy.
"""
import argparse, json, os, platform, shutil, statistics, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from push_bench import run, start_daemon  # noqa: E402


def push(bnf, img, uri, key, mode, streams):
    return json.loads(run([bnf, "image", "push", img, "--peer-key", key, "--name", "bench", "--to", uri, "--json",
                           "--full", "--streams", str(streams), "--encryption", mode]).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bnf", default="build-release/bnf")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="bench/out")
    a = ap.parse_args()
    bnf = os.path.abspath(a.bnf)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bnf-enc-bench-", dir="/dev/shm")
    os.environ["XDG_STATE_HOME"] = work + "/xdg"
    img = work + "/vm.img"
    runs = {(m, s): [] for m in ("on", "off") for s in (1, 2)}
    daemon = None
    try:
        run([bnf, "image", "make", img, "--size", a.size, "--zero-percent", "0"])
        daemon, uri = start_daemon(bnf, work + "/state", work + "/daemon.log", "--encryption", "off")
        key = work + "/state/peer.key"
        for _ in range(a.repeat):
            for streams in (1, 2):
                for mode in ("on", "off"):  # alternating: both see the same noise
                    runs[(mode, streams)].append(push(bnf, img, uri, key, mode, streams))
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for streams in (1, 2):
        secs = {m: [r["seconds"] for r in runs[(m, streams)]] for m in ("on", "off")}
        on, off = statistics.median(secs["on"]), statistics.median(secs["off"])
        rows.append({"streams": streams, "encrypted_s": secs["on"], "integrity_s": secs["off"],
                     "encrypted_median_s": on, "integrity_median_s": off, "encrypted_over_integrity": on / off})
    size_bytes = runs[("on", 1)][0]["payload_bytes"]
    for r in rows:
        r["encrypted_gbit"] = size_bytes * 8 / r["encrypted_median_s"] / 1e9
        r["integrity_gbit"] = size_bytes * 8 / r["integrity_median_s"] / 1e9
    report = {"machine": {"cores": os.cpu_count(), "kernel": platform.release()}, "image_size": a.size,
              "repeat": a.repeat, "rows": rows, "raw": {f"{m}-{s}": v for (m, s), v in runs.items()}}
    with open(os.path.join(a.out, "encryption-bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"Full pushes of a {a.size} image of random pages over loopback, median of {a.repeat} alternating "
             f"pairs (min-max); {os.cpu_count()} cores, kernel {platform.release()}.", "",
             "| streams | encrypted (s) | integrity only (s) | encrypted / integrity | Gbit/s enc / int |",
             "|---|---|---|---|---|"]
    for r in rows:
        e, i = r["encrypted_s"], r["integrity_s"]
        lines.append(f"| {r['streams']} | {r['encrypted_median_s']:.3f} ({min(e):.3f}-{max(e):.3f}) | "
                     f"{r['integrity_median_s']:.3f} ({min(i):.3f}-{max(i):.3f}) | "
                     f"{r['encrypted_over_integrity']:.1%} | {r['encrypted_gbit']:.2f} / {r['integrity_gbit']:.2f} |")
    md = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "encryption-bench.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
