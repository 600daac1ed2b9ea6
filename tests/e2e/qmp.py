#!/usr/bin/env python3
"""Minimal QMP client for the end-to-end tests: `qmp.py SOCKET COMMAND [JSON-ARGS]`
prints the command's return value as JSON; `qmp.py SOCKET wait-migration` polls
query-migrate until completed/failed and prints the final answer."""
import json, socket, sys, time


class Qmp:
    def __init__(self, path, timeout=60):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r:
                raise SystemExit(f"qmp {name}: {r['error'].get('desc')}")
            if "return" in r:
                return r["return"]


def main():
    q = Qmp(sys.argv[1])
    if sys.argv[2] == "wait-migration":
        deadline = time.time() + 120
        while time.time() < deadline:
            r = q.cmd("query-migrate")
            if r.get("status") in ("completed", "failed", "cancelled"):
                print(json.dumps(r))
                return
            time.sleep(0.1)
        raise SystemExit("migration did not finish in 120 s")
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(q.cmd(sys.argv[2], args)))


if __name__ == "__main__":
    main()
