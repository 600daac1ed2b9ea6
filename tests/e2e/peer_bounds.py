#!/usr/bin/env python3
"""Unauthenticated clients against a bnf daemon, as tests/e2e/peer_bounds.sh drives them.

Each mode opens connections to 127.0.0.1:PORT and prints one line of facts
(seconds until the daemon closed them, how many it closed at once) for the
shell test to check.
"""
import argparse
import socket
import struct
import time

MAGIC = 0x31464E42
PEER_HELLO = 24


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def header(frame_type: int, meta_len: int) -> bytes:
    h = struct.pack("<IBBHIIQI", MAGIC, frame_type, 0, 0, meta_len, 0, 0, 0)
    return h + struct.pack("<I", crc32c(h))


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    return s


def seconds_until_closed(s: socket.socket, t0: float) -> float:
    """Reads until the daemon closes the connection (an ERROR frame may come first)."""
    try:
        while s.recv(65536):
            pass
    except (ConnectionResetError, socket.timeout):
        pass
    return time.monotonic() - t0


def closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the daemon closes `s` within `seconds` (0: has closed it already)."""
    s.settimeout(seconds)  # 0: non-blocking
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except (socket.timeout, BlockingIOError):
        return False
    finally:
        s.settimeout(30)


def rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["silent", "trickle", "huge-meta", "flood"], required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--claim-meta", action="store_true", help="flood: each sends a header claiming 1 MiB of metadata")
    ap.add_argument("--rss-of", type=int, default=0, help="flood: report this process's resident memory meanwhile")
    a = ap.parse_args()
    t0 = time.monotonic()
    if a.mode == "silent":  # connects and sends nothing
        print(f"closed_after {seconds_until_closed(connect(a.port), t0):.2f}")
    elif a.mode == "trickle":  # a valid PEER_HELLO header, one byte every 0.5 s
        s = connect(a.port)
        hdr = header(PEER_HELLO, 100)
        try:
            for b in hdr:
                s.sendall(bytes([b]))
                if closed_within(s, 0.5):
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        print(f"closed_after {seconds_until_closed(s, t0):.2f}")
    elif a.mode == "huge-meta":  # a first frame claiming 1 MiB of metadata
        s = connect(a.port)
        s.sendall(header(PEER_HELLO, 1 << 20))
        print(f"closed_after {seconds_until_closed(s, t0):.2f}")
    elif a.mode == "flood":  # COUNT silent connections at once
        socks = [connect(a.port) for _ in range(a.count)]
        if a.claim_meta:
            for s in socks:
                try:
                    s.sendall(header(PEER_HELLO, 1 << 20))
                except (BrokenPipeError, ConnectionResetError):
                    pass
        time.sleep(0.5)
        at_once = sum(1 for s in socks if closed_within(s, 0))
        rss = rss_mib(a.rss_of) if a.rss_of else 0
        rest = [seconds_until_closed(s, t0) for s in socks]
        print(f"closed_at_once {at_once} last_closed_after {max(rest):.2f} rss_mib {rss}")


if __name__ == "__main__":
    main()
