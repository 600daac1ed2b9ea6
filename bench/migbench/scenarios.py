"""The scenario matrix. A scenario is one VM size x workload x link x time on B;
every strategy runs it `repeat` times."""

QUICK = [
    # (memory MiB, workload, link, seconds on B)
    (256, "idle", "loopback", 3),
    (256, "hot1", "loopback", 3),
    (256, "idle", "1gbit", 3),
    (256, "hot1", "1gbit", 3),
    (256, "hot10", "1gbit", 3),
    (1024, "idle", "1gbit", 3),
    (1024, "hot1", "1gbit", 3),
    (1024, "hot1", "10gbit", 3),
    (512, "linux", "1gbit", 10),
]

FULL = QUICK + [
    (1024, "linux", "1gbit", 60),
    (1024, "linux", "10gbit", 10),
    (1024, "idle", "loopback", 3),
    (1024, "hot1", "loopback", 3),
    (1024, "hot10", "1gbit", 3),
    (1024, "idle", "10gbit", 3),
    (1024, "hot10", "10gbit", 3),
    (1024, "hot1", "1gbit", 30),
    (1024, "hot1", "1gbit", 120),
    (256, "hot50", "10gbit", 3),
    (4096, "idle", "1gbit", 3),
    (4096, "hot1", "10gbit", 3),
]

# Native QEMU with its default settings (max-bandwidth 128 MiB/s) is measured
# on these scenarios only: below 1 Gbit/s the cap does not bind, above it does.
NATIVE_DEFAULT = {(1024, "hot1", "10gbit", 3)}

# bnf with its switchover check off (on by default for TCG VMs: it re-hashes
# the stopped VM's RAM and resends pages QEMU 7.2/TCG failed to resend) on
# these scenarios, to show what the check costs in downtime.
BNF_CHECK_OFF = {(1024, "hot1", "1gbit", 3), (1024, "hot1", "10gbit", 3), (256, "hot10", "1gbit", 3)}


def expand(rows):
    return [{"memory_mib": m, "workload": w, "link": l, "time_on_b": t, "streams": 1,
             "id": f"{m}M-{w}-{l}-{t}s"} for (m, w, l, t) in rows]
