#!/usr/bin/env python3
"""An on-path attacker between `bnf image push` and a daemon, for tests.

Listens on 127.0.0.1:0 (prints "listening PORT"), forwards every connection to
--to HOST:PORT, and lets the handshake's clear frames through. After them it
walks the sender's secure-channel records (u32 length, body, 16-byte tag) and,
on the first record of a connection past --after bytes, does --mode:

  pass    nothing (a passive observer: --capture FILE keeps what the sender sent)
  flip    flips one byte of the record's body
  drop    leaves the record out
  replay  sends the record twice
  move    the second connection to get that far gets the first one's record instead
"""
import argparse
import socket
import struct
import threading

HEADER = 32
TAG = 16


class Attack:
    def __init__(self, mode, after):
        self.mode = mode
        self.after = after
        self.lock = threading.Lock()
        self.moved = None  # the first connection's record, for "move"
        self.moved_ready = threading.Event()
        self.done = False

    def tamper(self, record):
        """Returns what goes on the wire instead of `record`."""
        if self.mode == "flip":
            b = bytearray(record)
            b[4 + len(b) // 2] ^= 0x01
            return bytes(b)
        if self.mode == "drop":
            return b""
        if self.mode == "replay":
            return record + record
        if self.mode == "move":
            with self.lock:
                first = self.moved is None
                if first:
                    self.moved = record
            if first:
                self.moved_ready.set()
                return record
            self.moved_ready.wait(10)
            return self.moved
        return record


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_frame(sock):
    h = read_exact(sock, HEADER)
    if h is None:
        return None
    meta_len = struct.unpack_from("<I", h, 8)[0]
    payload_len = struct.unpack_from("<Q", h, 16)[0]
    rest = read_exact(sock, meta_len + payload_len)
    return None if rest is None else h + rest


def shut_both(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def pump_raw(src, dst):
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        shut_both(src, dst)


def sender_side(src, dst, attack, capture):
    """The connecting host's bytes: two clear frames, then records."""
    sent = 0
    try:
        for _ in range(2):  # PEER_HELLO, PEER_PROOF
            f = read_frame(src)
            if f is None:
                return
            dst.sendall(f)
        tampered = False
        while True:
            head = read_exact(src, 4)
            if head is None:
                return
            (length,) = struct.unpack("<I", head)
            body = read_exact(src, length + TAG)
            if body is None:
                return
            record = head + body
            if capture is not None:
                capture.write(record)
            sent += len(record)
            if not tampered and sent > attack.after:
                tampered = True
                record = attack.tamper(record)
            dst.sendall(record)
    except OSError:
        pass
    finally:
        shut_both(src, dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", required=True)
    ap.add_argument("--mode", default="pass", choices=["pass", "flip", "drop", "replay", "move"])
    ap.add_argument("--after", type=int, default=1 << 20)
    ap.add_argument("--capture")
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    attack = Attack(a.mode, a.after)
    capture = open(a.capture, "wb", buffering=0) if a.capture else None
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    print("listening", lst.getsockname()[1], flush=True)
    while True:
        client, _ = lst.accept()
        server = socket.create_connection((host, int(port)))
        threading.Thread(target=sender_side, args=(client, server, attack, capture), daemon=True).start()
        threading.Thread(target=pump_raw, args=(server, client), daemon=True).start()


if __name__ == "__main__":
    main()
