"""A QMP client that keeps the events it sees (their timestamps time downtime)."""
import json
import socket
import time


class QmpError(RuntimeError):
    pass


class Qmp:
    def __init__(self, path, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise QmpError(f"cannot connect to QMP socket {path}")
                time.sleep(0.05)
        self.sock.settimeout(120)
        self.file = self.sock.makefile("rw")
        self.events = []
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            raise QmpError("QEMU closed the QMP connection")
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            r = self._read()
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise QmpError(f"{name}: {r['error'].get('desc')}")
            elif "return" in r:
                return r["return"]

    def event_time(self, name):
        """Timestamp (s) of the last event `name` seen, or None."""
        for e in reversed(self.events):
            if e["event"] == name:
                return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6
        return None

    def poll_events(self, seconds=0.0):
        """Reads events that arrive within `seconds` (none asked for)."""
        self.sock.settimeout(max(seconds, 0.001))
        try:
            while True:
                self.events.append(self._read())
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.sock.settimeout(120)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
