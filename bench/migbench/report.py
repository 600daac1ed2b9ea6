"""runs.json -> runs.csv, report.md and plots (gnuplot, SVG and PNG)."""
import csv
import json
import os
import shutil
import statistics
import subprocess
import time

PHASES = ["handshake_s", "qemu_stream_s", "digest_s", "page_send_s", "destination_finish_s",
          "destination_receive_s", "destination_load_s", "destination_commit_s", "source_commit_s"]
CSV_FIELDS = ["scenario", "memory_mib", "workload", "link", "time_on_b", "streams", "strategy", "repeat", "status",
              "trip", "mode", "seconds", "downtime_ms", "qemu_downtime_ms", "wire_bytes", "wire_bytes_to_destination", "pages_sent",
              "pages_skipped", "pages_zero", "pages_superseded", "rounds", "cpu_src_s", "cpu_dst_s",
              "daemon_peak_rss_mib_a", "daemon_peak_rss_mib_b", "intact", "gib_per_s"] + PHASES


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def fmt_s(x):
    return "–" if x is None else f"{x:.2f}"


def fmt_mib(x):
    return "–" if x is None else (f"{x / 2**20:.1f}" if x < 100 * 2**20 else f"{x / 2**20:.0f}")


def fmt_pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def group(records):
    g = {}
    for r in records:
        if r.get("status") == "ok":
            g.setdefault((r["scenario"], r["strategy"], r["trip"]), []).append(r)
    return g


def scenario_order(records):
    seen = []
    for r in records:
        if r["scenario"] not in seen:
            seen.append(r["scenario"])
    return seen


def write_csv(records, path):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in records:
            row = dict(r)
            row["intact"] = (r.get("verified") or {}).get("intact")
            row.update({p: (r.get("phases") or {}).get(p) for p in PHASES})
            w.writerow(row)


def stat(g, sc, strategy, trip, key):
    rs = g.get((sc, strategy, trip), [])
    return med([r.get(key) for r in rs]), spread([r.get(key) for r in rs]), len(rs)


def intact_count(g, sc, strategy):
    """Trips (both directions) after which the guest checked out, of all trips."""
    rs = [r for k, v in g.items() if k[0] == sc and k[1] == strategy for r in v]
    ok = sum(1 for r in rs if (r.get("verified") or {}).get("intact"))
    return f"{ok}/{len(rs)}"


def headline(g, scs, meta):
    lines = ["| scenario | native back trip | bnf first trip | bnf back trip | back: time bnf/native | "
             "back: wire bytes bnf/native | downtime back bnf / native | QEMU floor | guest intact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for sc in scs:
        nt, (nlo, nhi), nn = stat(g, sc, "native", "back", "seconds")
        ft, _, _ = stat(g, sc, "bnf", "first", "seconds")
        bt, (blo, bhi), bn = stat(g, sc, "bnf", "back", "seconds")
        nb, _, _ = stat(g, sc, "native", "back", "wire_bytes")
        bb, _, _ = stat(g, sc, "bnf", "back", "wire_bytes")
        nd, _, _ = stat(g, sc, "native", "back", "downtime_ms")
        bd, _, _ = stat(g, sc, "bnf", "back", "downtime_ms")
        fl, _, _ = stat(g, sc, "qemu-floor", "floor", "seconds")
        intact = {s: intact_count(g, sc, s) for s in ("bnf", "native")}
        ratio_t = bt / nt if bt and nt else None
        ratio_b = bb / nb if bb and nb else None
        lines.append(
            f"| {sc} | {fmt_s(nt)} s ({fmt_s(nlo)}–{fmt_s(nhi)}), {fmt_mib(nb)} MiB | {fmt_s(ft)} s | "
            f"{fmt_s(bt)} s ({fmt_s(blo)}–{fmt_s(bhi)}), {fmt_mib(bb)} MiB | **{fmt_pct(ratio_t)}** | "
            f"**{fmt_pct(ratio_b)}** | {fmt_s(bd)} / {fmt_s(nd)} ms | {fmt_s(fl)} s | "
            f"bnf {intact['bnf']}, native {intact['native']} |")
    return lines


def cpu_both(g, sc, strategy, trip):
    """Median CPU seconds of both hosts (None when neither was sampled)."""
    src, _, _ = stat(g, sc, strategy, trip, "cpu_src_s")
    dst, _, _ = stat(g, sc, strategy, trip, "cpu_dst_s")
    return None if src is None and dst is None else (src or 0) + (dst or 0)


def scenarios_with(g, strategy):
    return sorted({k[0] for k in g if k[1] == strategy})


def first_trips(g, scs):
    lines = ["| scenario | native first trip | bnf first trip | time bnf/native | of bnf's: until QEMU's `migrate` | "
             "native from its destination QEMU's start | end to end bnf/native | bytes to the destination bnf/native | "
             "downtime bnf / native | CPU s src+dst bnf / native |", "|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scs:
        nt, _, _ = stat(g, sc, "native", "first", "seconds")
        bt, _, _ = stat(g, sc, "bnf", "first", "seconds")
        wire = "wire_bytes_to_destination" if stat(g, sc, "native", "first", "wire_bytes_to_destination")[0] \
            else "wire_bytes"  # loopback: what the migrating program counted
        nb, _, _ = stat(g, sc, "native", "first", wire)
        bb, _, _ = stat(g, sc, "bnf", "first", wire)
        nd, _, _ = stat(g, sc, "native", "first", "downtime_ms")
        bd, _, _ = stat(g, sc, "bnf", "first", "downtime_ms")
        cpu = {s: cpu_both(g, sc, s, "first") or 0 for s in ("bnf", "native")}
        hs = med([(r.get("phases") or {}).get("migrate_issued_s") for r in g.get((sc, "bnf", "first"), [])])
        ns, _, _ = stat(g, sc, "native", "first", "seconds_with_destination_start")
        lines.append(f"| {sc} | {fmt_s(nt)} s | {fmt_s(bt)} s | {fmt_pct(bt / nt if bt and nt else None)} | "
                     f"{'–' if hs is None else f'{hs * 1000:.0f}'} ms | {fmt_s(ns)} s | "
                     f"{fmt_pct(bt / ns if bt and ns else None)} | {fmt_pct(bb / nb if bb and nb else None)} | {fmt_s(bd)} / {fmt_s(nd)} ms | "
                     f"{cpu['bnf']:.1f} / {cpu['native']:.1f} |")
    return lines


def where_time_goes(g, scs):
    lines = ["| scenario | total | handshake | QEMU stream (all passes) | of it: digests | of it: page sends | "
             "destination finish (tail, device state, commit) | source commit | downtime | pages sent / held back "
             "and superseded |", "|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scs:
        rs = g.get((sc, "bnf", "back"), [])
        if not rs:
            continue
        ph = {p: med([(r.get("phases") or {}).get(p) for r in rs]) for p in PHASES}
        lines.append(
            f"| {sc} | {fmt_s(med([r['seconds'] for r in rs]))} | {fmt_s(ph['handshake_s'])} | "
            f"{fmt_s(ph['qemu_stream_s'])} | {fmt_s(ph['digest_s'])} | {fmt_s(ph['page_send_s'])} | "
            f"{fmt_s(ph['destination_finish_s'])} | {fmt_s(ph['source_commit_s'])} | "
            f"{fmt_s(med([r.get('downtime_ms') for r in rs]))} ms | "
            f"{med([r.get('pages_sent') for r in rs]):.0f} / {med([r.get('pages_superseded') or 0 for r in rs]):.0f} |")
    return lines


def plots(g, scs, out):
    """Back-trip time and wire bytes against hot-set size, one line per link and strategy."""
    if not shutil.which("gnuplot"):
        return []
    rows = []
    for sc in scs:
        mem, wl, link = sc.split("-")[0], sc.split("-")[1], sc.split("-")[2]
        if wl != "idle" and not wl.startswith("hot"):
            continue  # the plots are against hot-set size
        hot = 0 if wl == "idle" else int(wl[3:])
        for s in ("native", "bnf"):
            t, _, n = stat(g, sc, s, "back", "seconds")
            b, _, _ = stat(g, sc, s, "back", "wire_bytes")
            if n:
                rows.append((f"{s} {mem} {link}", hot, t, b / 2**20))
    series = sorted({r[0] for r in rows})
    if not series:
        return []
    dat = os.path.join(out, "plot-data.txt")
    with open(dat, "w") as f:
        for name in series:
            f.write(f'"{name}"\n')
            for r in sorted([r for r in rows if r[0] == name], key=lambda r: r[1]):
                f.write(f"{r[1]} {r[2]:.4f} {r[3]:.4f}\n")
            f.write("\n\n")
    made = []
    for what, col, label, logy in (("time", 2, "back trip total time (s)", False),
                                   ("bytes", 3, "back trip bytes on the wire (MiB)", True)):
        for term, ext in (("svg size 800,480", "svg"), ("pngcairo size 800,480", "png")):
            path = os.path.join(out, f"back-trip-{what}.{ext}")
            script = (f"set terminal {term}; set output '{path}'; set key outside right; set grid;"
                      f"set xlabel 'hot set (% of guest RAM rewritten on B)'; set ylabel '{label}';"
                      f"{'set logscale y;' if logy else ''}"
                      f"plot for [i=0:{len(series) - 1}] '{dat}' index i using 1:{col} with linespoints "
                      f"title columnheader(1)")
            if subprocess.run(["gnuplot", "-e", script], capture_output=True).returncode == 0:
                made.append(os.path.basename(path))
    return made


def table_section(title, text, columns):
    """A report section's heading, its text and its table's header rows."""
    return ["", f"## {title}", "", text, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def check_off_section(g):
    check_off = scenarios_with(g, "bnf-check-off")
    if not check_off:
        return []
    md = table_section(
        "What bnf's switchover check costs, and what it buys",
        "QEMU 7.2 under TCG loses guest writes made just before the VM stops: the destination resumes "
        "with stale pages (native QEMU included: see the guest-intact counts). bnf re-hashes the stopped "
        "VM's RAM during the final pass and resends those pages (on by default for TCG VMs). Same "
        "scenarios with the check off (a first trip then trusts QEMU's stream and hashes the source's "
        "table after the VM runs on B; when QEMU lost writes, the trip back is full):",
        ["scenario", "downtime back: check on / off", "downtime first: on / off", "first trip: on / off / native",
         "pages QEMU missed (back, median)", "guest intact: on / off"])
    for sc in check_off:
        row = []
        for trip in ("back", "first"):
            on, _, _ = stat(g, sc, "bnf", trip, "downtime_ms")
            off, _, _ = stat(g, sc, "bnf-check-off", trip, "downtime_ms")
            row.append(f"{fmt_s(on)} / {fmt_s(off)} ms")
        first = [stat(g, sc, s, "first", "seconds")[0] for s in ("bnf", "bnf-check-off", "native")]
        row.append(" / ".join(f"{fmt_s(t)}" for t in first) + " s")
        fixed, _, _ = stat(g, sc, "bnf", "back", "pages_fixed_at_switchover")
        md.append(f"| {sc} | {row[0]} | {row[1]} | {row[2]} | {fixed if fixed is not None else '–'} | "
                  f"{intact_count(g, sc, 'bnf')} / {intact_count(g, sc, 'bnf-check-off')} |")
    return md


def relayed_section(g):
    relayed = scenarios_with(g, "bnf-relay")
    if not relayed:
        return []
    md = table_section(
        "First trips: direct against relayed",
        "A full trip goes direct by default: the source QEMU streams to the destination daemon, which "
        "lands the pages. `bnf migrate --relay` sends it through the source daemon instead (QEMU into a "
        "local socket, parsed, digested, framed, sent): one process and two copies more per page. "
        "Relayed runs are added with `--only ID --strategies bnf-relay --keep`.",
        ["scenario", "native", "bnf direct", "bnf relayed", "direct / relayed vs native",
         "downtime native / direct / relayed", "CPU s src+dst native / direct / relayed"])
    kinds = ("native", "bnf", "bnf-relay")
    for sc in relayed:
        t = {s_: stat(g, sc, s_, "first", "seconds")[0] for s_ in kinds}
        d = {s_: stat(g, sc, s_, "first", "downtime_ms")[0] for s_ in kinds}
        cpu = {s_: fmt_s(cpu_both(g, sc, s_, "first")) for s_ in kinds}
        ratio = (f"{fmt_pct(t['bnf'] / t['native'])} / {fmt_pct(t['bnf-relay'] / t['native'])}"
                 if None not in t.values() else "–")
        md.append(f"| {sc} | {fmt_s(t['native'])} s | {fmt_s(t['bnf'])} s | {fmt_s(t['bnf-relay'])} s | {ratio} | "
                  f"{fmt_s(d['native'])} / {fmt_s(d['bnf'])} / {fmt_s(d['bnf-relay'])} ms | "
                  f"{cpu['native']} / {cpu['bnf']} / {cpu['bnf-relay']} |")
    return md


def shared_section(g, scs):
    """Shared mode (bnf-shared) beside stream mode (bnf) and native, same scenarios, same run."""
    have = [sc for sc in scs if g.get((sc, "bnf-shared", "back"))]
    if not have:
        return []
    md = table_section(
        "Shared mode: bnf moves guest RAM itself",
        "`bnf migrate --mode shared`: QEMU migrates with x-ignore-shared (small RAM blocks and device state "
        "only); bnf sends the VM's RAM file in rounds of the pages the guest wrote, the last with the VM "
        "stopped. Round 0 of a back trip is a digest scan of the VM's RAM against the snapshot A kept. "
        "Time and downtime as above; *rounds* and *stopped by* are the shared trip's.",
        ["scenario", "back: native / stream / shared", "back: shared vs native", "back wire: shared vs native",
         "first: native / stream / shared", "first: shared vs native", "downtime back native / stream / shared",
         "downtime first native / stream / shared", "shared rounds (back), stopped by", "guest intact shared"])
    kinds = ("native", "bnf", "bnf-shared")
    for sc in have:
        row = {}
        for trip in ("first", "back"):
            row[trip] = {k: stat(g, sc, k, trip, "seconds")[0] for k in kinds}
            row[trip + "_d"] = {k: stat(g, sc, k, trip, "downtime_ms")[0] for k in kinds}
        nb, _, _ = stat(g, sc, "native", "back", "wire_bytes")
        sb, _, _ = stat(g, sc, "bnf-shared", "back", "wire_bytes")
        backs = g.get((sc, "bnf-shared", "back"), [])
        rounds = med([(r.get("shared") or {}).get("rounds") for r in backs])
        stopped = sorted({(r.get("shared") or {}).get("stopped_by", "?") for r in backs})
        b, f, bd, fd = row["back"], row["first"], row["back_d"], row["first_d"]

        def ratio(t):
            return fmt_pct(t["bnf-shared"] / t["native"]) if t["bnf-shared"] and t["native"] else "–"
        md.append(f"| {sc} | {' / '.join(fmt_s(b[k]) for k in kinds)} s | **{ratio(b)}** | "
                  f"{fmt_pct(sb / nb) if sb and nb else '–'} | {' / '.join(fmt_s(f[k]) for k in kinds)} s | "
                  f"**{ratio(f)}** | {' / '.join(fmt_s(bd[k]) for k in kinds)} ms | "
                  f"{' / '.join(fmt_s(fd[k]) for k in kinds)} ms | {rounds}, {', '.join(stopped)} | "
                  f"{intact_count(g, sc, 'bnf-shared')} |")
    return md


def link_section(g, scs):
    """Where a trip's time goes on the wire, for runs made with --link-timeline."""
    lines = []
    for sc in scs:
        for strategy in ("native", "bnf"):
            rs = [r for r in g.get((sc, strategy, "first"), []) if r.get("link_flow_ms") is not None]
            if not rs:
                continue
            cols = [med([r[k] for r in rs]) for k in ("link_start_ms", "link_flow_ms", "link_pauses_ms",
                                                      "link_end_ms")]
            lines.append(f"| {sc} | {strategy} | " + " | ".join(f"{c:.1f}" for c in cols) +
                         f" | {med([r['seconds'] for r in rs]) * 1000:.1f} |")
    if not lines:
        return []
    return table_section(
        "On the link: first trips (medians, ms)",
        "Sampled every ~0.5 ms on the source host's side of the link (`--link-timeline`). *Start*: from the "
        "trip's clock start (native: its `migrate`; bnf: its command in the daemon) to the stream's first bytes "
        "on the wire; *flow*: first to last bytes; *pauses*: gaps over 2 ms within it (the link's token bucket "
        "holds ~4 ms, so shorter ones cost nothing); *end*: last bytes to the destination's RESUME.",
        ["scenario", "strategy", "start", "flow", "pauses", "end", "time"]) + lines


def write(out):
    with open(os.path.join(out, "runs.json")) as f:
        data = json.load(f)
    records, m = data["records"], data["machine"]
    write_csv(records, os.path.join(out, "runs.csv"))
    g = group(records)
    scs = [s for s in scenario_order(records) if any(k[0] == s for k in g)]
    failed = [r for r in records if r.get("status") != "ok"]
    made = plots(g, scs, out)
    md = [f"# Back-and-forth migration: bnf vs native QEMU",
          "",
          f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
          f"{m['qemu']}, accel {m['accel']}. Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
          f"from `runs.json` in this folder; regenerate with `python3 bench/migrate_bench.py --quick --out DIR` "
          f"(or `--report DIR` to redo this page from saved runs).",
          "",
          "Each point: median of the runs (min–max in brackets). Scenario id = guest RAM - workload - link - "
          "seconds the VM runs on each host before it leaves (A, then B). *Native* is QEMU 7.2 precopy between "
          "two plain QEMUs with max-bandwidth raised; its "
          "back trip is a full migration again. *bnf back trip* lands in the snapshot A kept. Wire bytes are "
          "counted on the veth link (both directions; the first-trip table: only those sent to the destination, "
          "which the link's rate bounds) where there is one, else by the migrating program. "
          "Downtime = source QEMU's STOP event to the destination QEMU's RESUME event, for both. Time = until "
          "the VM runs on the destination; for bnf from its command (QEMU's preparation, its stream's "
          "connection, the handshake beside them and the destination QEMU's start included), for native from "
          "`migrate` (its destination QEMU already listening, capabilities and max-bandwidth set before). "
          "*QEMU floor* = QEMU's own migration into a local UNIX socket drained as fast as it comes (guest "
          "running, same workload): no stream-mode trip can be faster than that.",
          "",
          "## Back trip (B → A): the headline", ""] + headline(g, scs, m) + [
          "", "## First trip (A → B): bnf against native", "",
          "Two clocks. *time bnf/native*: bnf from its `migrate` command, native from QEMU's `migrate` with its "
          "destination QEMU already listening, both until the destination's RESUME. *end to end*: native's clock "
          "started when its destination QEMU was launched, as an operator's (or libvirt's) migration does; bnf's "
          "command launches the destination QEMU itself, inside its clock.", ""] + first_trips(g, scs) + [
          "", "## Where a bnf back trip's time goes (medians, seconds)", "",
          "QEMU stream = from `migrate` to the end of QEMU's stream: QEMU's passes over RAM, parsed, digested and "
          "filtered as they come (digests and page sends are parts of it). Destination finish = from the end "
          "of the stream to VM_DONE: the last pages landed, device state loaded by the destination QEMU, the "
          "arrival committed.", ""] + where_time_goes(g, scs)
    md += shared_section(g, scs) + check_off_section(g) + relayed_section(g) + link_section(g, scs)
    native_default = [k for k in g if k[1] == "native-default"]
    if native_default:
        md += ["", "## Native QEMU with default settings (max-bandwidth 128 MiB/s)", ""]
        for k in sorted(native_default):
            t = med([r["seconds"] for r in g[k]])
            md.append(f"- {k[0]}, {k[2]} trip: {fmt_s(t)} s")
    for f_ in made:
        if f_.endswith(".svg"):
            md += ["", f"![{f_}]({f_})"]
    if failed:
        md += ["", "## Runs that failed", ""] + [f"- {r['scenario']} {r['strategy']} #{r['repeat']}: {r['status']}"
                                                  for r in failed]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
