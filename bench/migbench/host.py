"""The machine side of a run: links between two "hosts", processes, CPU and memory."""
import os
import platform
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NETNS = os.path.join(ROOT, "scripts", "netns-link.sh")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Link:
    """Loopback (both hosts in this namespace) or two network namespaces joined
    by a veth pair shaped with tc to `rate` (e.g. "1gbit")."""

    def __init__(self, kind):
        self.kind = kind
        self.name = f"bnfb{os.getpid() % 10000}"
        self.shaped = kind != "loopback"

    def __enter__(self):
        if self.shaped:
            subprocess.run([NETNS, "up", self.name, self.kind], check=True)
        return self

    def __exit__(self, *exc):
        if self.shaped:
            subprocess.run([NETNS, "down", self.name], check=False)

    def addr(self, side):
        if not self.shaped:
            return "127.0.0.1"
        return subprocess.run([NETNS, "addr", self.name, side], check=True, capture_output=True,
                              text=True).stdout.strip()

    def prefix(self, side):
        """Command prefix that runs a program on host `side` ("a" or "b")."""
        return ["ip", "netns", "exec", f"{self.name}-{side}"] if self.shaped else []

    def tx_bytes(self):
        """Bytes sent over the link in both directions so far (None on loopback)."""
        by_side = self.tx_bytes_by_side()
        return None if by_side is None else sum(by_side.values())

    def tx_bytes_by_side(self):
        """Bytes each host ("a", "b") sent over the link so far (None on loopback)."""
        if not self.shaped:
            return None
        sent = {}
        for side, dev in (("a", "va"), ("b", "vb")):
            path = f"/sys/class/net/{self.name[:11]}-{dev}/statistics/tx_bytes"
            out = subprocess.run(self.prefix(side) + ["cat", path], capture_output=True, text=True, check=True)
            sent[side] = int(out.stdout)
        return sent


def cpu_seconds(pids):
    """User + system CPU seconds of processes (and their threads) so far."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return total


def peak_rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def machine():
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    mem_kib = 0
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "qemu": first_line(["qemu-system-x86_64", "--version"]),
            "accel": "tcg"}


class LinkTimeline:
    """What one host sent on the link, sampled every ~0.5 ms while a trip runs
    (/proc/PID/net/dev of a process in that host's namespace): when the stream
    started and ended on the wire, and how long it paused. Opt-in
    (--link-timeline): the sampling takes a few percent of a core."""

    def __init__(self, link, side, pid):
        self.path = f"/proc/{pid}/net/dev"
        self.dev = f"{link.name[:11]}-{'va' if side == 'a' else 'vb'}:"
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _tx(self):
        with open(self.path) as f:
            for line in f:
                if line.strip().startswith(self.dev):
                    return int(line.split(":", 1)[1].split()[8])
        return None

    def _loop(self):
        last = None
        while not self.stop.is_set():
            try:
                tx = self._tx()
            except OSError:
                return
            if tx is not None and tx != last:
                self.samples.append((time.time(), tx))
                last = tx
            time.sleep(0.0005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def summary(self, start, resume):
        """ms from `start` to the stream's first bytes on the wire, while it
        flowed, pauses over 2 ms within it, and from its last bytes to `resume`."""
        if len(self.samples) < 2 or not start or not resume:
            return {}
        base, total = self.samples[0][1], self.samples[-1][1] - self.samples[0][1]
        first = next((t for t, v in self.samples if v - base > 64 << 10), None)
        last = next(t for t, v in self.samples if v - base >= total - (16 << 10))
        if first is None:  # under 64 KiB in all: no stream to time
            return {}
        pauses = sum(b[0] - a[0] for a, b in zip(self.samples, self.samples[1:])
                     if first <= a[0] < last and b[0] - a[0] > 0.002)
        ms = lambda s: round(s * 1000, 1)  # noqa: E731
        return {"link_start_ms": ms(first - start), "link_flow_ms": ms(last - first),
                "link_pauses_ms": ms(pauses), "link_end_ms": ms(resume - last)}
