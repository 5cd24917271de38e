#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HTTPS load for the security tests: a fleet of well-behaved devices, a slow-loris, a flood.

Loopback only; Python standard library only (asyncio, ssl, hashlib, json); every mode is bounded
by counts, and by --timeout or --lifetime seconds as a safety net; SIGTERM ends any mode cleanly.

fleet      N devices, each with its own certificate and key (ID.pem and ID.key in --certs, as
           `fwdepot certs issue-device --out DIR/ID` writes them), open one mutual-TLS connection
           each to the device listener and keep it (HTTP/1.1 keep-alive). On it each device checks
           in (POST /api/v1/device/checkin) with its version; after its first check-in it waits
           until every device has got there, so that all N connections are open at once (the
           server's own count, from the admin listener's /metrics, is read at that moment with
           --admin). Each device makes --rounds idle check-ins in all, the first included; when
           one brings an offer, the device checks the offer against its signed manifest,
           reports downloading, GETs the image from the offer's URL on the same connection,
           checks size, ETag and SHA-256 against the offer, reports downloaded and updating,
           and makes its next idle check-in at the new version with result success. One JSON
           line at the end (devices, connections_peak, checkins, downloads, bytes_verified,
           errors and a few samples); exits 1 on any error.
slowloris  K connections (TLS; a client certificate with --cert/--key) that trickle a request
           head one byte every --interval seconds and never finish it. Prints "open K" once K
           are open at once, "closed N lived=S" each time the server closes one (S: seconds from
           the start of its TCP connect), and a JSON summary on exit. With --reopen a closed one is
           replaced, up to --max-opens connections in all. With --keepalive-first PATH each
           connection first completes one GET PATH, so the trickled head is its second request.
flood      TCP connections to a TLS listener at --rate a second, in turn: silent ones, ones that
           send half a ClientHello, and full handshakes without a client certificate (then a
           check-in request, which must never be answered). The first two kinds are held, at most
           --max-held at once, until the server closes them. Prints "holding N" once --ready-held
           are held, and a JSON summary of its counters on exit.
"""
import argparse
import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import re
import signal
import ssl
import sys
import time
from urllib.parse import urlsplit

MAX_HEAD = 16 * 1024  # a response head larger than this is an error
MAX_JSON = 1024 * 1024  # a JSON answer larger than this is an error
CHUNK = 64 * 1024
STATUS_LINE = re.compile(r"HTTP/1\.([01]) (\d{3})(?: .*)?")


class HttpError(Exception):
    """The peer broke HTTP/1.1, or answered something other than expected."""


class PeerClosed(Exception):
    """The peer closed the connection where a response was due."""


# --- arguments -----------------------------------------------------------------------------


def loopback(text):
    """HOST:PORT (or [V6]:PORT) on a loopback address; returns (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {host}") from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"loopback only: {host}")
    return host, int(port)


def host_header(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def client_context(cacert, cert=None, key=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cacert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def install_stop(stop):
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


# --- a small HTTP/1.1 client ----------------------------------------------------------------


def build_request(method, path, host, body=None, content_type="application/json", close=False):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: https-fleet/1",
             "Accept: */*"]
    if body is not None:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


async def read_head(reader):
    """Reads one response head: (status, headers with lower-case names, keep_alive)."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise PeerClosed("the server closed the connection instead of answering") from None
            raise HttpError(f"truncated response head ({len(e.partial)} bytes)") from None
        except asyncio.LimitOverrunError:
            raise HttpError("response head over the reader's limit") from None
        if len(raw) > MAX_HEAD:
            raise HttpError(f"response head of {len(raw)} bytes")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        m = STATUS_LINE.fullmatch(lines[0])
        if not m:
            raise HttpError(f"bad status line {lines[0][:80]!r}")
        status = int(m.group(2))
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[0] in " \t":
                raise HttpError(f"bad header line {line[:80]!r}")
            name, value = name.lower(), value.strip(" \t")
            if name in headers:
                if name == "content-length" and headers[name] != value:
                    raise HttpError("conflicting Content-Length headers")
                if name != "content-length":
                    headers[name] += ", " + value
            else:
                headers[name] = value
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer: the real one follows
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in tokens and (m.group(1) == "1" or "keep-alive" in tokens)
        return status, headers, keep_alive


async def read_body(reader, headers, sink):
    """Feeds the body to sink(bytes) as it arrives; returns its length. Content-Length or
    chunked only: a keep-alive connection cannot carry a body delimited by the close."""
    async def exactly(n):
        left = n
        while left:
            data = await reader.read(min(CHUNK, left))
            if not data:
                raise HttpError(f"body cut off with {left} of {n} bytes missing")
            sink(data)
            left -= len(data)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_text):
                raise HttpError(f"bad chunk size {line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return total
            await exactly(size)
            total += size
            if await reader.readexactly(2) != b"\r\n":
                raise HttpError("chunk not followed by CRLF")
    length = headers.get("content-length")
    if length is None:
        raise HttpError("a body without Content-Length or chunked framing")
    if not length.isdigit():
        raise HttpError(f"bad Content-Length {length!r}")
    await exactly(int(length))
    return int(length)


class Connection:
    """One keep-alive HTTPS connection; one request at a time."""

    def __init__(self, reader, writer, host):
        self.reader, self.writer, self.host = reader, writer, host
        self.closed_by_server = False

    async def exchange(self, method, path, body=None, sink=None, limit=MAX_JSON):
        """Sends a request, reads the whole answer: (status, headers, body bytes). With sink,
        the body goes to sink instead and the returned body is empty."""
        if self.closed_by_server:
            raise HttpError("the server said Connection: close earlier")
        self.writer.write(build_request(method, path, self.host, body))
        await self.writer.drain()
        status, headers, keep_alive = await read_head(self.reader)
        kept = bytearray()

        def keep(data):
            if len(kept) + len(data) > limit:
                raise HttpError(f"answer over {limit} bytes")
            kept.extend(data)

        if method != "HEAD" and status not in (204, 304):
            await read_body(self.reader, headers, sink or keep)
        if not keep_alive:
            self.closed_by_server = True
        return status, headers, bytes(kept)

    async def close(self, timeout=10):
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            self.writer.transport.abort()


# --- fleet ---------------------------------------------------------------------------------


def discover(certs_dir):
    """Device ids: every ID.pem in the directory that has an ID.key beside it."""
    path = os.path.join
    ids = sorted(name[:-4] for name in os.listdir(certs_dir)
                 if name.endswith(".pem") and os.path.isfile(path(certs_dir, name[:-4] + ".key")))
    return [(i, path(certs_dir, i + ".pem"), path(certs_dir, i + ".key")) for i in ids]


def semver_key(v):
    core = v.split("+", 1)[0].split("-", 1)[0]
    return tuple(int(x) for x in core.split("."))


def check_offer(update, current, target_host, target_port):
    """The offer's fields, consistent with each other and with its signed manifest."""
    for field, kind in (("image_id", int), ("version", str), ("size", int), ("sha256", str),
                        ("manifest", dict), ("urls", dict)):
        if not isinstance(update.get(field), kind):
            raise HttpError(f"offer without a valid {field}: {json.dumps(update)[:200]}")
    if not re.fullmatch(r"[0-9a-f]{64}", update["sha256"]):
        raise HttpError(f"offer sha256 {update['sha256']!r}")
    if semver_key(update["version"]) <= semver_key(current) and not update.get("allow_downgrade"):
        raise HttpError(f"offered {update['version']} while at {current}")
    try:
        manifest = json.loads(base64.b64decode(update["manifest"]["payload"], validate=True))
    except (KeyError, ValueError, TypeError) as e:
        raise HttpError(f"offer manifest unreadable: {e}") from None
    for field in ("size", "sha256", "version"):
        if manifest.get(field) != update[field]:
            raise HttpError(f"offer {field} {update[field]!r} differs from its manifest's "
                            f"{manifest.get(field)!r}")
    url = urlsplit(update["urls"].get("https", ""))
    if (url.scheme, url.hostname, url.port) != ("https", target_host, target_port):
        raise HttpError(f"offer URL {update['urls'].get('https')!r} is not this listener")
    if url.path != f"/api/v1/device/images/{update['image_id']}" or url.query:
        raise HttpError(f"offer URL path {url.path!r}")
    return url.path


async def server_open_connections(admin, cacert):
    """fwdepot_open_connections from the admin listener's /metrics (no token needed)."""
    host, port = admin
    reader, writer = await asyncio.open_connection(
        host, port, ssl=client_context(cacert), server_hostname=host, ssl_handshake_timeout=60)
    conn = Connection(reader, writer, host_header(host, port))
    try:
        status, _, body = await asyncio.wait_for(conn.exchange("GET", "/metrics"), 60)
    finally:
        await conn.close()
    if status != 200:
        raise HttpError(f"/metrics answered {status}")
    m = re.search(rb"^fwdepot_open_connections (\d+)$", body, re.M)
    if not m:
        raise HttpError("no fwdepot_open_connections in /metrics")
    return int(m.group(1))


async def run_fleet(a):
    host, port = a.target
    devices = discover(a.certs)
    if len(devices) != a.devices:
        print(f"https_fleet: {len(devices)} certificate/key pairs in {a.certs}, "
              f"expected {a.devices}", file=sys.stderr)
        return 2
    n = len(devices)
    hosthdr = host_header(host, port)
    counts = {"checkins": 0, "downloads": 0, "bytes_verified": 0}
    errors = []
    versions = {}
    live = {"open": 0, "peak": 0, "arrived": 0}
    barrier = {}
    all_here = asyncio.Event()
    handshakes = asyncio.Semaphore(a.connect_concurrency)

    def error(dev, stage, message):
        errors.append(f"{dev} {stage}: {message}")

    async def arrive():
        live["arrived"] += 1
        if live["arrived"] < n:
            return
        barrier["open_at_barrier"] = live["open"]
        try:
            if a.admin:
                barrier["server_open_connections_at_barrier"] = \
                    await server_open_connections(a.admin, a.cacert)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal here
            error("-", "metrics at the barrier", f"{type(e).__name__}: {e}")
        finally:
            all_here.set()

    async def checkin(conn, model, version, state, result):
        body = {"model": model, "version": version, "state": state}
        if result:
            body["result"] = result
        status, _, answer = await conn.exchange(
            "POST", "/api/v1/device/checkin", json.dumps(body).encode())
        if status != 200:
            raise HttpError(f"check-in ({state}) answered {status}: {answer[:200]!r}")
        try:
            update = json.loads(answer)["update"]
        except (ValueError, KeyError, TypeError):
            raise HttpError(f"check-in answer {answer[:200]!r}") from None
        counts["checkins"] += 1
        return update

    async def download(conn, path, update):
        digest = hashlib.sha256()
        got = 0

        def sink(data):
            nonlocal got
            got += len(data)
            if got > update["size"]:
                raise HttpError(f"more than the offered {update['size']} bytes")
            digest.update(data)

        status, headers, _ = await conn.exchange("GET", path, sink=sink)
        if status != 200:
            raise HttpError(f"download answered {status}")
        if headers.get("content-length") != str(update["size"]):
            raise HttpError(f"Content-Length {headers.get('content-length')} for an offer of "
                            f"{update['size']} bytes")
        if headers.get("etag") != f'"{update["sha256"]}"':
            raise HttpError(f"ETag {headers.get('etag')!r}")
        if got != update["size"] or digest.hexdigest() != update["sha256"]:
            raise HttpError(f"payload: {got} bytes with SHA-256 {digest.hexdigest()}")
        counts["downloads"] += 1
        counts["bytes_verified"] += got

    async def device(dev_id, cert, key):
        stage = "connect"
        arrived = False
        conn = None
        version = a.from_version
        try:
            ctx = client_context(a.cacert, cert, key)
            async with handshakes:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=a.server_name or host,
                    ssl_handshake_timeout=a.handshake_timeout)
            conn = Connection(reader, writer, hosthdr)
            live["open"] += 1
            live["peak"] = max(live["peak"], live["open"])
            result = None
            for rnd in range(a.rounds):
                stage = f"round {rnd + 1} check-in"
                update = await checkin(conn, a.model, version, "idle", result)
                if rnd == 0:
                    stage = "barrier"
                    arrived = True
                    await arrive()
                    await all_here.wait()
                if update is None:
                    if a.expect_version and version != a.expect_version:
                        raise HttpError(f"no offer at {version}")
                    continue
                stage = f"round {rnd + 1} offer"
                path = check_offer(update, version, host, port)
                if a.expect_version and update["version"] != a.expect_version:
                    raise HttpError(f"offered {update['version']}, not {a.expect_version}")
                stage = f"round {rnd + 1} download"
                await checkin(conn, a.model, version, "downloading", "initial")
                await download(conn, path, update)
                await checkin(conn, a.model, version, "downloaded", "initial")
                await checkin(conn, a.model, version, "updating", "initial")
                version, result = update["version"], "success"
            if a.expect_version and version != a.expect_version:
                raise HttpError(f"ended at {version}")
            versions[version] = versions.get(version, 0) + 1
        except asyncio.CancelledError:
            error(dev_id, stage, "unfinished at the overall timeout or SIGTERM")
            raise
        except Exception as e:  # noqa: BLE001 - any failure of a device is an error to report
            error(dev_id, stage, f"{type(e).__name__}: {e}")
        finally:
            if not arrived:
                await arrive()
            if conn is not None:
                live["open"] -= 1
                await conn.close()

    stop = asyncio.Event()
    install_stop(stop)
    tasks = [asyncio.ensure_future(device(*d)) for d in devices]
    everything = asyncio.gather(*tasks, return_exceptions=True)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({everything, stopper}, timeout=a.timeout,
                                 return_when=asyncio.FIRST_COMPLETED)
    if everything not in done:
        error("-", "fleet", "SIGTERM" if stop.is_set() else f"overall timeout of {a.timeout} s")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    summary = {"mode": "fleet", "devices": n, "rounds": a.rounds,
               "connections_peak": live["peak"], **barrier, **counts, "versions": versions,
               "errors": len(errors), "error_samples": errors[:5]}
    emit(summary)
    return 1 if errors else 0


# --- slowloris -----------------------------------------------------------------------------


async def run_slowloris(a):
    host, port = a.target
    ctx = client_context(a.cacert, a.cert, a.key)
    # A head that is valid as far as it goes and never ends.
    prefix = (f"POST {a.path} HTTP/1.1\r\nHost: {host_header(host, port)}\r\n"
              "Content-Type: application/json\r\nX-Slow: ").encode()
    stop = asyncio.Event()
    install_stop(stop)
    c = {"opened": 0, "connect_failed": 0, "closed_by_server": 0, "answered": 0, "open": 0,
         "peak": 0, "bytes_sent": 0}
    lived = []
    handshakes = asyncio.Semaphore(16)
    announced = False

    async def one():
        nonlocal announced
        try:
            async with handshakes:
                # Taken before the TCP connect: never later than the server's clocks start, so
                # "lived" is never less than the time the server gave the connection.
                start = time.monotonic()
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ctx, server_hostname=a.server_name or host,
                    ssl_handshake_timeout=60)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
            c["connect_failed"] += 1
            print(f"connect_failed {type(e).__name__}: {e}", flush=True)
            return
        if a.keepalive_first:
            # One complete request first: the trickled head is then the connection's second.
            try:
                status, _, _ = await asyncio.wait_for(Connection(
                    reader, writer, host_header(host, port)).exchange("GET", a.keepalive_first), 60)
            except (PeerClosed, HttpError, OSError, ssl.SSLError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError) as e:
                c["connect_failed"] += 1
                print(f"connect_failed first request: {type(e).__name__}: {e}", flush=True)
                writer.transport.abort()
                return
        c["opened"] += 1
        c["open"] += 1
        c["peak"] = max(c["peak"], c["open"])
        if c["open"] >= a.connections and not announced:
            announced = True
            print(f"open {c['open']}", flush=True)
        reading = asyncio.ensure_future(reader.read(4096))
        stopping = asyncio.ensure_future(stop.wait())
        sent = 0
        closed = False
        try:
            while not stop.is_set():
                byte = prefix[sent:sent + 1] if sent < len(prefix) else b"a"
                try:
                    writer.write(byte)
                    await writer.drain()
                except (OSError, ssl.SSLError):
                    closed = True
                    break
                sent += 1
                c["bytes_sent"] += 1
                done, _ = await asyncio.wait({reading, stopping}, timeout=a.interval,
                                             return_when=asyncio.FIRST_COMPLETED)
                if reading in done:
                    closed = True
                    try:
                        data = reading.result()
                    except (OSError, ssl.SSLError):
                        data = b""
                    if data:  # the server answered a head that never ended
                        c["answered"] += 1
                        print(f"answered {data[:60]!r}", flush=True)
                    break
        finally:
            c["open"] -= 1
            reading.cancel()
            stopping.cancel()
            writer.transport.abort()
        if closed:
            age = time.monotonic() - start
            lived.append(age)
            c["closed_by_server"] += 1
            print(f"closed {c['closed_by_server']} lived={age:.2f}", flush=True)

    async def slot():
        while not stop.is_set() and c["opened"] + c["connect_failed"] < a.max_opens:
            await one()
            if not a.reopen:
                break

    slots = [asyncio.ensure_future(slot()) for _ in range(a.connections)]
    try:
        await asyncio.wait_for(stop.wait(), a.lifetime)
    except asyncio.TimeoutError:
        stop.set()
    await asyncio.gather(*slots, return_exceptions=True)
    emit({"mode": "slowloris", **c, "min_lived_s": round(min(lived), 3) if lived else None,
          "max_lived_s": round(max(lived), 3) if lived else None})
    return 0


# --- flood ---------------------------------------------------------------------------------


def client_hello():
    """A real ClientHello, as Python's TLS stack would send it (a fresh random each time)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


async def run_flood(a):
    host, port = a.target
    nocert_ctx = client_context(a.cacert)
    stop = asyncio.Event()
    install_stop(stop)
    c = {"opened": 0, "connect_failed": 0, "silent": 0, "half_hello": 0, "nocert": 0,
         "held": 0, "held_peak": 0, "closed_by_server": 0, "nocert_refused_in_handshake": 0,
         "nocert_refused_after": 0, "nocert_served": 0, "nocert_hung": 0}
    lived = []
    announced = False
    tasks = set()
    nocert_slots = asyncio.Semaphore(a.nocert_concurrency)

    connecting = 0  # held ones launched and not yet connected: they count against --max-held

    async def held(kind):
        nonlocal announced, connecting
        start = time.monotonic()  # before the connect, as in the slow-loris
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        except (OSError, asyncio.TimeoutError):
            c["connect_failed"] += 1
            return
        finally:
            connecting -= 1
        c["opened"] += 1
        c[kind] += 1
        c["held"] += 1
        c["held_peak"] = max(c["held_peak"], c["held"])
        if c["held"] >= a.ready_held and not announced:
            announced = True
            print(f"holding {c['held']}", flush=True)
        try:
            if kind == "half_hello":
                hello = client_hello()
                writer.write(hello[:len(hello) // 2])
            while True:
                if not await reader.read(4096):
                    break
            c["closed_by_server"] += 1
            lived.append(time.monotonic() - start)
        except (OSError, ssl.SSLError):
            c["closed_by_server"] += 1
            lived.append(time.monotonic() - start)
        finally:
            c["held"] -= 1
            writer.transport.abort()

    async def nocert():
        async with nocert_slots:
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=nocert_ctx, server_hostname=a.server_name or host,
                    ssl_handshake_timeout=30)
            except (ssl.SSLError, ConnectionError, asyncio.TimeoutError):
                c["nocert_refused_in_handshake"] += 1
                c["nocert"] += 1
                c["opened"] += 1
                return
            except OSError:
                c["connect_failed"] += 1
                return
            c["nocert"] += 1
            c["opened"] += 1
            try:
                writer.write(build_request(
                    "POST", "/api/v1/device/checkin", host_header(host, port),
                    b'{"model":"m1","version":"1.0.0","state":"idle"}'))
                status, _, _ = await asyncio.wait_for(read_head(reader), 30)
                c["nocert_served"] += 1
                print(f"nocert_served status={status}", flush=True)
            except asyncio.TimeoutError:
                c["nocert_hung"] += 1
            except (PeerClosed, HttpError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
                c["nocert_refused_after"] += 1
            finally:
                writer.transport.abort()

    kinds = ["silent", "half_hello", "nocert"]
    started = time.monotonic()
    deadline = started + a.lifetime
    launched = 0
    print("started", flush=True)
    while not stop.is_set() and launched < a.max_total and time.monotonic() < deadline:
        due = started + launched / a.rate
        if due > time.monotonic():
            try:
                await asyncio.wait_for(stop.wait(), due - time.monotonic())
                break
            except asyncio.TimeoutError:
                pass
        kind = kinds[launched % len(kinds)]
        launched += 1
        if kind == "nocert":
            task = asyncio.ensure_future(nocert())
        elif c["held"] + connecting < a.max_held:
            connecting += 1
            task = asyncio.ensure_future(held(kind))
        else:
            continue  # the hold is full: this turn's connection is skipped
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    emit({"mode": "flood", **c, "min_lived_s": round(min(lived), 3) if lived else None,
          "max_lived_s": round(max(lived), 3) if lived else None})
    return 0


# --- main ----------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = p.add_subparsers(dest="mode", required=True)

    def common(q):
        q.add_argument("--target", type=loopback, required=True, help="HOST:PORT, loopback only")
        q.add_argument("--cacert", required=True, help="CA that issued the server certificate")
        q.add_argument("--server-name", help="name to check the server certificate against "
                       "(default: the target's host)")

    f = sub.add_parser("fleet", help="N devices with check-ins and verified downloads")
    common(f)
    f.add_argument("--certs", required=True, help="directory with ID.pem and ID.key per device")
    f.add_argument("--devices", type=int, required=True, help="how many pairs --certs must hold")
    f.add_argument("--model", required=True)
    f.add_argument("--from-version", default="1.0.0")
    f.add_argument("--expect-version", help="the version every device must end at")
    f.add_argument("--rounds", type=int, default=3, help="idle check-ins per device")
    f.add_argument("--admin", type=loopback, help="admin listener, for /metrics at the barrier")
    f.add_argument("--connect-concurrency", type=int, default=16,
                   help="handshakes in flight at once (the connections stay open)")
    f.add_argument("--handshake-timeout", type=float, default=120.0)
    f.add_argument("--timeout", type=float, default=300.0, help="safety bound, seconds")

    s = sub.add_parser("slowloris", help="connections that trickle a request head forever")
    common(s)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--connections", type=int, default=200)
    s.add_argument("--interval", type=float, default=1.0, help="seconds between bytes")
    s.add_argument("--path", default="/api/v1/device/checkin")
    s.add_argument("--keepalive-first", metavar="PATH",
                   help="GET PATH (any answer, kept alive) before trickling the next head")
    s.add_argument("--reopen", action="store_true", help="replace a connection the server closes")
    s.add_argument("--max-opens", type=int, default=10000)
    s.add_argument("--lifetime", type=float, default=300.0)

    fl = sub.add_parser("flood", help="silent, half-hello and certificate-less connections")
    common(fl)
    fl.add_argument("--rate", type=float, default=150.0, help="new connections a second")
    fl.add_argument("--max-held", type=int, default=300, help="silent/half-hello ones held at once")
    fl.add_argument("--ready-held", type=int, default=100, help='print "holding N" at this many')
    fl.add_argument("--nocert-concurrency", type=int, default=16)
    fl.add_argument("--max-total", type=int, default=100000)
    fl.add_argument("--lifetime", type=float, default=300.0)

    a = p.parse_args()
    if a.mode == "slowloris" and bool(a.cert) != bool(a.key):
        p.error("--cert and --key go together")
    run = {"fleet": run_fleet, "slowloris": run_slowloris, "flood": run_flood}[a.mode]
    sys.exit(asyncio.run(run(a)))


if __name__ == "__main__":
    main()
