#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A TCP relay on 127.0.0.1 for the fault tests: forwards each connection to --target, and
once --stall-after bytes have gone through it in total (either way), forwards nothing more
and prints "stalled" (connections stay open, frozen). Prints "listening PORT" first. The bytes
(TLS) are never looked at. Exits on SIGTERM or after --lifetime seconds.
"""
import argparse
import selectors
import socket
import sys

from lifetime import Lifetime


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--stall-after", type=int, default=0)
    p.add_argument("--lifetime", type=float, default=300.0)
    a = p.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    life = Lifetime(a.lifetime)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    moved = 0
    stalled = False
    frozen = []  # connections kept open, unread, once stalled
    while life.running():
        for key, _ in sel.select(0.5):
            if key.data is None:
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", a.target))
                for s, peer in ((client, server), (server, client)):
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, peer)
                continue
            sock, peer = key.fileobj, key.data
            if sock.fileno() == -1:  # closed with its peer earlier in this round
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                for s in (sock, peer):
                    try:
                        sel.unregister(s)
                    except (KeyError, ValueError):
                        pass
                    s.close()
                continue
            if a.stall_after and moved + len(data) >= a.stall_after:
                data = data[: a.stall_after - moved]
                stalled = True
            peer.setblocking(True)
            try:
                peer.sendall(data)
            except OSError:
                pass
            peer.setblocking(False)
            moved += len(data)
            if stalled:
                # Frozen: nothing more is read or written, and nothing is closed.
                for k in list(sel.get_map().values()):
                    if k.data is not None:
                        sel.unregister(k.fileobj)
                        frozen.append(k.fileobj)
                print("stalled", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
