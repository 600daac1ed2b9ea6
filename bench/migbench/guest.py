"""The guests a scenario runs, and how a run checks them afterwards."""
import json
import os
import struct
import subprocess
import time

from . import host
from .qmp import Qmp

BUILD = os.environ.get("BNF_BUILD", os.path.join(host.ROOT, "build"))
MEMCHECK = os.path.join(BUILD, "tests", "guest", "memcheck-guest.elf")
CHECKER = os.path.join(BUILD, "tests", "guest", "bnf-guest-check")
STATUS_ADDR = 0x80000  # tests/guest/guest_layout.h

# Workloads of the memory-checking test guest (tests/guest). Every one first
# fills all guest RAM above 2 MiB with a page-unique pattern (>= 99% non-zero
# pages: a long-running VM's memory, not a fresh one native QEMU could skip).
#   idle      then halts: nothing changes while the VM sits on B.
#   hotN      then rewrites N% of its pages (spread evenly over RAM) in a loop,
#             one pass over the set every 100 ms: a fixed set of hot pages.
WORKLOADS = {
    "idle": "hot=0",
    "hot1": "hot=1% pause=100",
    "hot10": "hot=10% pause=100",
    "hot50": "hot=50% pause=100",
}


def hot_percent(workload):
    return 0 if workload == "idle" else int(workload[3:])


def qemu_args(workload):
    return ["-kernel", MEMCHECK, "-append", WORKLOADS[workload]]


def status_word(ram_file, index):
    with open(ram_file, "rb") as f:
        f.seek(STATUS_ADDR + 4 * index)
        return struct.unpack("<I", f.read(4))[0]


def wait_populated(ram_file, timeout=120):
    """Waits until the guest has filled its memory (phase running or idle)."""
    host.wait_for(lambda: os.path.exists(ram_file) and status_word(ram_file, 2) in (2, 3), timeout,
                  f"the guest in {ram_file} to populate its memory")


def verify(qmp_socket, ram_file):
    """Pauses the guest, checks its memory page by page, resumes it."""
    q = Qmp(qmp_socket)
    try:
        q.cmd("stop")
        out = subprocess.run([CHECKER, ram_file], capture_output=True, text=True)
        q.cmd("cont")
    finally:
        q.close()
    try:
        r = json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"intact": False, "error": out.stderr.strip()}
    return {"intact": r["intact"], "passes": r["passes"], "errors": r["errors"][:2]}


def running(ram_file, workload):
    """The guest makes progress (hot workloads) or is idle as it should be."""
    if workload == "idle":
        return status_word(ram_file, 2) == 3
    before = status_word(ram_file, 8)
    time.sleep(0.3)
    return status_word(ram_file, 8) > before
