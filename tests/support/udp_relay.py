#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A lossy UDP relay on 127.0.0.1, for the CoAPS tests.

Each client address gets its own socket towards the target, so the server sees one peer per
client. Every datagram, either way, is dropped with probability --drop, or else held back for
up to --delay-ms with probability --delay (so datagrams also arrive out of order). With
--stall-after N, once N client datagrams have been forwarded nothing more passes, and the line
"stalled" is printed. Prints "listening PORT" first; on SIGTERM prints the counts as
"stats forwarded=.. dropped=.. delayed=.." and exits. The payload (DTLS) is never looked at.
It exits by itself after --lifetime seconds, so a forgotten relay cannot outlive a test run.
"""
import argparse
import heapq
import itertools
import random
import selectors
import socket
import sys
import time

from lifetime import Lifetime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", type=int, required=True, help="UDP port on 127.0.0.1")
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--stall-after", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lifetime", type=float, default=300.0)
    a = p.parse_args()

    rng = random.Random(a.seed)
    target = ("127.0.0.1", a.target)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(front, selectors.EVENT_READ, None)
    backs = {}  # client address -> socket towards the target
    queue = []  # (due, seq, socket, data, destination)
    seq = itertools.count()
    counts = {"forwarded": 0, "dropped": 0, "delayed": 0}
    from_client = 0
    stalled = False
    life = Lifetime(a.lifetime)
    print(f"listening {front.getsockname()[1]}", flush=True)

    def route(sock, data, dest):
        if rng.random() < a.drop:
            counts["dropped"] += 1
            return
        if a.delay > 0 and rng.random() < a.delay:
            counts["delayed"] += 1
            due = time.monotonic() + rng.uniform(0, a.delay_ms) / 1000.0
            heapq.heappush(queue, (due, next(seq), sock, data, dest))
            return
        counts["forwarded"] += 1
        sock.sendto(data, dest)

    while life.running():
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, sock, data, dest = heapq.heappop(queue)
            counts["forwarded"] += 1
            sock.sendto(data, dest)
        timeout = min(0.5, queue[0][0] - now) if queue else 0.5
        for key, _ in sel.select(max(0.0, timeout)):
            sock = key.fileobj
            try:
                data, source = sock.recvfrom(65536)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            if stalled:
                counts["dropped"] += 1
                continue
            if key.data is None:  # from a client
                back = backs.get(source)
                if back is None:
                    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    back.bind(("127.0.0.1", 0))
                    back.setblocking(False)
                    backs[source] = back
                    sel.register(back, selectors.EVENT_READ, source)
                route(back, data, target)
                from_client += 1
                if a.stall_after and from_client >= a.stall_after:
                    stalled = True
                    print("stalled", flush=True)
            else:  # from the target, for the client key.data
                route(front, data, key.data)
    print("stats " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
