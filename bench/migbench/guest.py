"""The guests a scenario runs, and how a run checks them afterwards."""
import json
import os
import re
import struct
import subprocess
import time

from . import host
from .qmp import Qmp

BUILD = os.environ.get("BNF_BUILD", os.path.join(host.ROOT, "build"))
MEMCHECK = os.path.join(BUILD, "tests", "guest", "memcheck-guest.elf")
CHECKER = os.path.join(BUILD, "tests", "guest", "bnf-guest-check")
LINUX = os.path.join(BUILD, "tests", "guest", "linux")
STATUS_ADDR = 0x80000  # tests/guest/guest_layout.h

# Workloads of the memory-checking test guest (tests/guest). Every one first
# fills all guest RAM above 2 MiB with a page-unique pattern (>= 99% non-zero
# pages: a long-running VM's memory, not a fresh one native QEMU could skip).
#   idle      then halts: nothing changes while the VM sits on B.
#   hotN      then rewrites N% of its pages (spread evenly over RAM) in a loop,
#             one pass over the set every 100 ms: a fixed set of hot pages.
#   linux     a Debian cloud kernel with a busybox initramfs (tests/guest/linux):
#             fills 60% of RAM with random data in tmpfs (8 MiB chunks, each
#             with its SHA-256), then every second writes 1 MiB of new random
#             data to one of 8 scratch files and re-verifies one chunk.
WORKLOADS = {
    "idle": "hot=0",
    "hot1": "hot=1% pause=100",
    "hot10": "hot=10% pause=100",
    "hot50": "hot=50% pause=100",
}


def qemu_args(workload, memory_mib):
    if workload == "linux":
        fill = memory_mib * 6 // 10 // 8 * 8
        return ["-kernel", f"{LINUX}/vmlinuz", "-initrd", f"{LINUX}/initrd.cpio.gz", "-append",
                f"console=ttyS0 quiet bnf.fill={fill} bnf.work=files"]
    return ["-kernel", MEMCHECK, "-append", WORKLOADS[workload]]


def linux_available():
    return os.path.exists(f"{LINUX}/vmlinuz") and os.path.exists(f"{LINUX}/initrd.cpio.gz")


def _serial(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_ready(workload, ram_file, serial_log):
    if workload == "linux":
        host.wait_for(lambda: "bnf-linux: ready" in _serial(serial_log), 300, "the Linux guest to fill its memory")
    else:
        wait_populated(ram_file)


def status_word(ram_file, index):
    with open(ram_file, "rb") as f:
        f.seek(STATUS_ADDR + 4 * index)
        return struct.unpack("<I", f.read(4))[0]


def wait_populated(ram_file, timeout=120):
    """Waits until the guest has filled its memory (phase running or idle)."""
    host.wait_for(lambda: os.path.exists(ram_file) and status_word(ram_file, 2) in (2, 3), timeout,
                  f"the guest in {ram_file} to populate its memory")


def verify(workload, qmp_socket, ram_file, serial_log):
    """The memory-checking guest: paused, checked page by page, resumed. The
    Linux guest: keeps ticking on the destination, every checksum good."""
    if workload == "linux":
        ticks = re.compile(r"tick \d+ ok")
        before = len(ticks.findall(_serial(serial_log)))
        time.sleep(2.5)
        text = _serial(serial_log)
        intact = "CORRUPT" not in text and len(ticks.findall(text)) > before
        return {"intact": intact, "errors": [l for l in text.splitlines() if "CORRUPT" in l][:2]}
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
