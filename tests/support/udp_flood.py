#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Floods a DTLS server on 127.0.0.1 with junk, for the CoAPS tests.

From --sockets source ports in turn it sends, at --rate datagrams a second until SIGTERM or
--seconds (at most --max datagrams): random garbage of random length, and DTLS 1.2 ClientHellos
that are never continued (half-open handshakes). Prints "started" once the first round is out,
and at the end "sent garbage=.. hellos=.. replies=..". Loopback only; bounded in time and count.
"""
import argparse
import os
import random
import select
import socket
import struct
import sys
import time

from lifetime import Lifetime


def client_hello(rng):
    body = b"\xfe\xfd" + rng.randbytes(32)  # DTLS 1.2, random
    body += b"\x00"  # no session id
    body += b"\x00"  # no cookie
    body += struct.pack("!H", 4) + b"\xc0\x2b\xc0\x2c"  # ECDHE-ECDSA-AES-GCM
    body += b"\x01\x00"  # null compression
    ext = b"\x00\x0a\x00\x04\x00\x02\x00\x17"  # supported_groups: P-256
    ext += b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats: uncompressed
    ext += b"\x00\x0d\x00\x04\x00\x02\x04\x03"  # signature_algorithms: ecdsa_secp256r1_sha256
    body += struct.pack("!H", len(ext)) + ext
    n = len(body)
    handshake = b"\x01" + n.to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + n.to_bytes(3, "big")
    handshake += body
    return b"\x16\xfe\xfd" + b"\x00\x00" + b"\x00" * 6 + struct.pack("!H", len(handshake)) + handshake


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--sockets", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rate", type=float, default=5000.0)
    p.add_argument("--max", type=int, default=200000)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    rng = random.Random(a.seed)
    target = ("127.0.0.1", a.target)
    socks = []
    for _ in range(a.sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    counts = {"garbage": 0, "hellos": 0, "replies": 0}
    life = Lifetime(a.seconds)
    start = time.monotonic()
    first_round = True
    while life.running() and counts["garbage"] + counts["hellos"] < a.max:
        # Paced: the datagrams sent so far are due by now at --rate.
        due = start + (counts["garbage"] + counts["hellos"]) / a.rate
        if due > time.monotonic():
            time.sleep(due - time.monotonic())
        for s in socks:
            if rng.random() < 0.5:
                data = os.urandom(rng.randint(1, 1400))
                counts["garbage"] += 1
            else:
                data = client_hello(rng)
                counts["hellos"] += 1
            try:
                s.sendto(data, target)
            except (BlockingIOError, ConnectionRefusedError):
                pass
        ready, _, _ = select.select(socks, [], [], 0)
        for s in ready:
            try:
                while s.recv(65536):
                    counts["replies"] += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
        if first_round:
            print("started", flush=True)
            first_round = False
    print("sent " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
