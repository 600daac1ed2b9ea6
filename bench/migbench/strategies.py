"""Migration strategies measured on the same scenarios. Each runs the two trips
of a back-and-forth on its own fresh VM and returns one record per trip:
  first trip  A -> B   (nothing of the VM on B yet)
  back trip   B -> A
The VM runs `time_on_b` seconds on each host before it leaves it: a VM is not
migrated the moment it boots (a bnf daemon uses the time to fault the VM's RAM
into its own view of it, which a departure re-hashes).
New strategies (a shared mode, other transports) subclass Strategy."""
import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time

from . import guest, host
from .qmp import Qmp


class CpuSampler:
    """CPU seconds used by every process whose command line contains a marker
    (a host's state directory), sampled every 50 ms so that processes which
    exit during the trip (the source QEMU) still count up to their end."""

    def __init__(self, markers):
        self.markers = markers
        self.first = {}
        self.last = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _scan(self):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
            except OSError:
                continue
            for side, marker in self.markers.items():
                if marker in cmd:
                    cpu = host.cpu_seconds([pid])
                    self.first.setdefault((side, pid), cpu)
                    self.last[(side, pid)] = cpu

    def _loop(self):
        while not self.stop.is_set():
            self._scan()
            self.stop.wait(0.05)

    def __enter__(self):
        self._scan()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._scan()

    def seconds(self, side):
        return round(sum(v - self.first[k] for k, v in self.last.items() if k[0] == side), 3)


def drain(listener):
    """Reads a connection to its end, discarding (1 MiB at a time)."""
    conn, _ = listener.accept()
    buf = bytearray(1 << 20)
    with conn:
        while conn.recv_into(buf):
            pass


def wire_bytes(before, after):
    """Bytes both hosts sent over the link between two tx_bytes_by_side() readings."""
    return sum(after[side] - before[side] for side in after)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_command(sc, ram_file, qmp_sock, serial, incoming=None):
    """Plain QEMU with RAM in a shared file on tmpfs, as bnf launches it."""
    mem = sc["memory_mib"]
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", f"{mem}M", "-machine", "pc,memory-backend=ram0",
           "-object", f"memory-backend-file,id=ram0,size={mem}M,mem-path={ram_file},share=on",
           "-qmp", f"unix:{qmp_sock},server=on,wait=off", "-serial", f"file:{serial}",
           "-display", "none", "-monitor", "none"] + guest.qemu_args(sc["workload"], mem)
    if incoming:
        cmd += ["-incoming", incoming]
    return cmd


class Strategy:
    name = "?"
    timeline = False  # sample the source host's link during each trip (host.LinkTimeline)

    def run(self, sc, link, work):
        raise NotImplementedError


class NativeQemu(Strategy):
    """QEMU 7.2's own precopy over TCP between two plain QEMUs. `tuned` raises
    max-bandwidth (the default caps it at 128 MiB/s); the way back is another
    full migration: nothing is kept on the host the VM left."""

    def __init__(self, tuned=True):
        self.tuned = tuned
        self.name = "native" if tuned else "native-default"

    def run(self, sc, link, work):
        procs = []
        try:
            return self._run(sc, link, work, procs)
        finally:
            for p in procs:
                p.kill()
                p.wait()

    def _spawn(self, link, side, work, tag, sc, incoming=None):
        d = os.path.join(work, tag)
        os.makedirs(d, exist_ok=True)
        ram = f"{d}/ram"
        qmp = f"{d}/qmp.sock"
        p = subprocess.Popen(link.prefix(side) + qemu_command(sc, ram, qmp, f"{d}/serial.log", incoming),
                             stdout=subprocess.DEVNULL, stderr=open(f"{d}/qemu.log", "w"))
        return p, ram, qmp

    def _run(self, sc, link, work, procs):
        pa, ram_a, qmp_a = self._spawn(link, "a", work, "na1", sc)
        procs.append(pa)
        guest.wait_ready(sc["workload"], ram_a, f"{work}/na1/serial.log")
        trips = []
        src, src_ram, src_qmp, src_side = pa, ram_a, qmp_a, "a"
        for n, (dst_side, tag) in enumerate((("b", "nb1"), ("a", "na2"))):
            time.sleep(sc["time_on_b"])
            port = free_port()
            uri = f"tcp:{link.addr(dst_side)}:{port}"
            t_spawn = time.time()  # an operator's native migration starts the destination QEMU too
            pd, ram_d, qmp_d = self._spawn(link, dst_side, work, tag, sc, incoming=uri)
            procs.append(pd)
            markers = {src_side: os.path.dirname(src_ram) + "/", dst_side: os.path.dirname(ram_d) + "/"}
            timeline = host.LinkTimeline(link, src_side, src.pid) if self.timeline and link.shaped else None
            rec = self._trip(Qmp(src_qmp), Qmp(qmp_d), uri, link, markers, src_side, dst_side, timeline)
            rec["seconds_with_destination_start"] = round(rec.pop("resumed_at") - t_spawn, 3)
            rec["trip"] = "first" if n == 0 else "back"
            rec["verified"] = guest.verify(sc["workload"], qmp_d, ram_d, f"{work}/{tag}/serial.log")
            src.kill()
            src.wait()
            trips.append(rec)
            src, src_ram, src_qmp, src_side = pd, ram_d, qmp_d, dst_side
        return trips

    def _trip(self, src, dst, uri, link, markers, src_side, dst_side, timeline):
        src.cmd("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
        if self.tuned:
            src.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        tx0 = link.tx_bytes_by_side()
        with CpuSampler(markers) as cpu, timeline or contextlib.nullcontext():
            t0 = time.time()
            src.cmd("migrate", {"uri": uri})
            deadline = t0 + 600
            while True:
                info = src.cmd("query-migrate")
                if info["status"] in ("completed", "failed", "cancelled"):
                    break
                if time.time() > deadline:
                    src.cmd("migrate_cancel")
                    raise RuntimeError("native migration did not converge in 600 s")
                time.sleep(0.05)
            if info["status"] != "completed":
                raise RuntimeError(f"native migration {info['status']}: {info.get('error-desc', '')}")
            host.wait_for(lambda: dst.cmd("query-status")["running"], 60, "the destination QEMU to run")
            dst.poll_events(0.05)
        stop, resume = src.event_time("STOP"), dst.event_time("RESUME")
        ram = info["ram"]
        links = timeline.summary(t0, resume) if timeline else {}
        tx1 = link.tx_bytes_by_side()
        rec = {
            "mode": "full",
            "seconds": round((resume or time.time()) - t0, 3),
            "resumed_at": resume or time.time(),
            "downtime_ms": round((resume - stop) * 1000, 1) if stop and resume else None,
            "qemu_downtime_ms": info.get("downtime"),
            "wire_bytes": wire_bytes(tx0, tx1) if tx0 is not None else ram["transferred"],
            "wire_bytes_to_destination": tx1[src_side] - tx0[src_side] if tx0 is not None else None,
            "pages_sent": ram["normal"],
            "pages_skipped": 0,
            "pages_zero": ram["duplicate"],
            "rounds": ram.get("dirty-sync-count"),
            "cpu_src_s": cpu.seconds(src_side),
            "cpu_dst_s": cpu.seconds(dst_side),
            **links,
        }
        src.close()
        dst.close()
        return rec


class Bnf(Strategy):
    """bnf stream mode: two daemons (hosts A and B); A keeps the VM's snapshot
    when it leaves, so the way back sends only what changed on B."""

    def __init__(self, bnf_path, switchover_check="auto", relay=False, write_tracker="auto", encryption="on",
                 mode="stream"):
        self.bnf = bnf_path
        self.mode = mode  # "shared": bnf moves guest RAM itself, QEMU only device state (--mode shared)
        self.encryption = encryption  # "off": both daemons authenticate only (--encryption off)
        self.switchover_check = switchover_check
        self.relay = relay  # full trips through the source daemon too (bnf migrate --relay)
        self.write_tracker = write_tracker  # "off": the check hashes all RAM in the downtime; "on": relayed trips too
        self.name = ("bnf-shared" if mode == "shared" else "bnf-unencrypted" if encryption == "off" else "bnf-relay" if relay else "bnf-untracked" if write_tracker == "off"
                     else "bnf-tracked" if write_tracker == "on"
                     else "bnf" if switchover_check == "auto" else f"bnf-check-{switchover_check}")

    def run(self, sc, link, work):
        daemons = {}
        try:
            return self._run(sc, link, work, daemons)
        finally:
            for p in daemons.values():
                p.terminate()
            for p in daemons.values():
                p.wait()
            subprocess.run(["pkill", "-9", "-f", work], check=False)

    def _cli(self, side, work, *args):
        env = dict(os.environ, BNF_CONTROL=f"{work}/{side.upper()}/control.sock")
        out = subprocess.run([self.bnf, *args], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"bnf {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def _daemon(self, link, side, work):
        state = f"{work}/{side.upper()}"
        log = open(f"{state}.log", "w")
        p = subprocess.Popen(link.prefix(side) + [self.bnf, "daemon", "--state-dir", state, "--listen",
                                                   self._endpoint(link, side), "--peer-key",
                                                   f"{work}/peer.key", "--encryption", self.encryption],
                             stderr=log)
        host.wait_for(lambda: os.path.exists(f"{state}/control.sock") or p.poll() is not None, 10, f"daemon {side}")
        if p.poll() is not None:
            raise RuntimeError(f"daemon {side} exited: {open(f'{state}.log').read().strip()}")
        return p

    @staticmethod
    def _endpoint(link, side):  # on loopback both hosts share one address: two ports
        return f"bnf+tcp:{link.addr(side)}:{7070 if side == 'a' else 7071}"

    def _status(self, side, work):
        return json.loads(self._cli(side, work, "vm", "status", "web1", "--json"))

    def _run(self, sc, link, work, daemons):
        for side in "ab":
            daemons[side] = self._daemon(link, side, work)
        self._cli("a", work, "vm", "create", "web1", "--memory", f"{sc['memory_mib']}M", "--",
                  *guest.qemu_args(sc["workload"], sc["memory_mib"]))
        self._cli("a", work, "vm", "start", "web1")
        st = self._status("a", work)
        guest.wait_ready(sc["workload"], st["ram_file"], st["serial_log"])
        trips = []
        for n, (src, dst) in enumerate((("a", "b"), ("b", "a"))):
            time.sleep(sc["time_on_b"])
            markers = {src: f"{work}/{src.upper()}", dst: f"{work}/{dst.upper()}"}
            tx0 = link.tx_bytes_by_side()
            timeline = host.LinkTimeline(link, src, daemons[src].pid) if self.timeline and link.shaped else None
            with CpuSampler(markers) as cpu, timeline or contextlib.nullcontext():
                r = json.loads(self._cli(src, work, "migrate", "web1", self._endpoint(link, dst), "--json",
                                         "--switchover-check", self.switchover_check,
                                         "--write-tracker", self.write_tracker, "--mode", self.mode,
                                         *(["--relay"] if self.relay else [])))
            ended = time.time()
            tx1 = link.tx_bytes_by_side()
            st = self._status(dst, work)
            rec = {k: r.get(k) for k in ("mode", "downtime_ms", "pages_sent", "pages_skipped", "pages_zero",
                                          "pages_superseded", "pages_fixed_at_switchover", "rounds", "phases",
                                          "fallback", "direct", "first_pass_held_back_by", "qemu_cpu_wait",
                                          "write_tracker", "pages_hashed_at_stop", "pages_hashed_after_settle",
                                          "ram_mode", "ram_mode_reason", "shared")}
            # Migration time, as for native: until the VM runs on the destination.
            rec["seconds"] = round(r.get("running_after_s") or r["seconds"], 3)
            rec["command_seconds"] = round(r["seconds"], 3)
            rec["qemu_downtime_ms"] = r.get("source_downtime_ms")
            rec["wire_bytes"] = wire_bytes(tx0, tx1) if tx0 is not None else r["wire_bytes"]
            rec["wire_bytes_to_destination"] = tx1[src] - tx0[src] if tx0 is not None else None
            rec["cpu_src_s"] = cpu.seconds(src)
            rec["cpu_dst_s"] = cpu.seconds(dst)
            rec["trip"] = "first" if n == 0 else "back"
            if timeline:  # the daemon's clock started about `seconds` before the command returned
                start = ended - r["seconds"]
                rec.update(timeline.summary(start, start + rec["seconds"]))
            rec["verified"] = guest.verify(sc["workload"], st["qmp_socket"], st["ram_file"], st["serial_log"])
            trips.append(rec)
        for side, p in daemons.items():
            peak = host.peak_rss_mib(p.pid)
            for rec in trips:
                rec[f"daemon_peak_rss_mib_{side}"] = peak
        return trips


class QemuFloor(Strategy):
    """QEMU's own pass over guest RAM into a local UNIX socket drained as fast
    as it comes: the floor of any stream-mode trip, which must read QEMU's
    stream (bnf parses, digests and filters it as well)."""

    name = "qemu-floor"

    def run(self, sc, link, work):
        d = f"{work}/floor"
        os.makedirs(d, exist_ok=True)
        p = subprocess.Popen(qemu_command(sc, f"{d}/ram", f"{d}/qmp.sock", f"{d}/serial.log"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            guest.wait_ready(sc["workload"], f"{d}/ram", f"{d}/serial.log")
            q = Qmp(f"{d}/qmp.sock")
            q.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
            sink = socket.socket(socket.AF_UNIX)
            sink.bind(f"{d}/sink.sock")
            sink.listen(1)
            drained = threading.Thread(target=drain, args=(sink,), daemon=True)
            drained.start()
            t0 = time.time()
            q.cmd("migrate", {"uri": f"unix:{d}/sink.sock"})
            while q.cmd("query-migrate")["status"] not in ("completed", "failed"):
                time.sleep(0.02)
            seconds = time.time() - t0
            q.close()
            drained.join(10)
            sink.close()
        finally:
            p.kill()
            p.wait()
            shutil.rmtree(d, ignore_errors=True)
        gib = sc["memory_mib"] / 1024
        return [{"trip": "floor", "mode": "into a local socket", "seconds": round(seconds, 3),
                 "gib_per_s": round(gib / seconds, 3)}]
