#!/usr/bin/python3
"""HTTP probes for tests/integration/test_http.c, with Python's http.client
and raw sockets, against a `baton serve` on 127.0.0.1.

  http_probe.py get PORT PATH [TOKEN]            status and body of a GET (keep-alive client)
  http_probe.py big PORT TOKEN MB                POST a body of MB megabytes (Content-Length
                                                 announced): prints "STATUS SENT_BYTES"
  http_probe.py chunked PORT TOKEN MB            the same, chunked (no Content-Length): the
                                                 server closes the connection (status "none")
  http_probe.py slow PORT N TIMEOUT_S            N clients that send half a request and stall;
                                                 meanwhile a normal GET /healthz is asked: prints
                                                 "HEALTHZ HELD CUT" (its status, how many stalled
                                                 ones were still open when it was answered, how
                                                 many the server then closed itself)
  http_probe.py trickle PORT TOKEN N             N clients that announce a 100,000-byte body and
                                                 send it a byte every 0.5 s (never idle: slowloris);
                                                 meanwhile GET /healthz and a POST /v1/events are
                                                 answered: prints "HEALTHZ EVENTS CUT SENT_MAX" (the
                                                 statuses, how many trickles the server cut within
                                                 60 s, the most bytes one of them sent)
  http_probe.py headers PORT N                   N clients that send a request's headers a byte
                                                 every 0.5 s (never idle, never whole); meanwhile
                                                 GET /healthz is answered: prints "HEALTHZ CUT
                                                 SENT_MAX" (its status, how many the server cut
                                                 within 60 s, the most bytes one of them sent)
  http_probe.py perip PORT N                     N connections from 127.0.0.1, each answered once
                                                 then trickling its next request's headers (a byte
                                                 every 0.5 s: never idle); then one more from
                                                 127.0.0.1 and one from 127.0.0.2: prints their
                                                 statuses ("refused" when closed unanswered)
  http_probe.py post PORT TOKEN FILE OUT         POST each line of FILE (a JSON array of events)
                                                 to /v1/events, one request each, until the server
                                                 goes away; appends each id answered "accepted" or
                                                 "duplicate" in a 202 to OUT (flushed per answer)
"""
import http.client
import json
import select
import socket
import sys
import time


def get(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Authorization": "Bearer " + token} if token else {}
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read().decode()
    # the same connection again: keep-alive works
    c.request("GET", "/healthz")
    r2 = c.getresponse()
    r2.read()
    print(r.status, r2.status)
    print(body)


def big(port, token, mb, chunked):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    total = mb * 1024 * 1024
    head = "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" \
           "Content-Type: application/json\r\n" % token
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "Content-Length: %d\r\n\r\n" % total
    s.sendall(head.encode())
    sent = 0
    chunk = b"[" + b" " * (64 * 1024 - 1)
    got = b""
    while sent < total:
        data = chunk if not chunked else (b"%x\r\n" % len(chunk)) + chunk + b"\r\n"
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            break
        sent += len(chunk)
        r, _, _ = select.select([s], [], [], 0)
        if r:
            break
    s.settimeout(5)
    try:
        while b"\r\n\r\n" not in got:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except (socket.timeout, ConnectionResetError):
        pass
    status = got.split(b" ")[1].decode() if got.startswith(b"HTTP/1.1") else "none"
    print(status, sent)


def slow(port, n, timeout_s):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends the headers
        socks.append(s)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    # how many stalled ones were still held when healthz was answered (a
    # closed socket reads as readable)
    readable, _, _ = select.select(socks, [], [], 0)
    held = n - len(readable)
    # then each is closed by the server (its timeout); a client-side
    # timeout (30 s) means the server never cut it
    cut = 0
    for s in socks:
        try:
            d = s.recv(100)
            while d:
                d = s.recv(100)
            cut += 1
        except ConnectionResetError:
            cut += 1
        except socket.timeout:
            pass
    print("%d %d %d" % (r.status, held, cut))


def trickle(port, token, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(("POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[" % token).encode())
        socks.append([s, 1, False])
    # the trickles have begun: others are answered
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    healthz = r.status
    c.request("POST", "/v1/events", body='{"id": "trickle-1", "type": "order", "profile": "p1"}',
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    events = r.status
    c.close()
    deadline = time.time() + 60
    while time.time() < deadline and not all(x[2] for x in socks):
        time.sleep(0.5)
        for x in socks:
            if x[2]:
                continue
            s = x[0]
            rd, _, _ = select.select([s], [], [], 0)
            try:
                if rd and not s.recv(4096):
                    x[2] = True  # closed by the server
                    continue
                s.sendall(b" ")
                x[1] += 1
            except (BrokenPipeError, ConnectionResetError):
                x[2] = True
    cut = sum(1 for x in socks if x[2])
    print("%d %d %d %d" % (healthz, events, cut, max(x[1] for x in socks)))


def headers(port, n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append([s, 0, False])
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    healthz = r.status
    c.close()
    deadline = time.time() + 60
    while time.time() < deadline and not all(x[2] for x in socks):
        time.sleep(0.5)
        for x in socks:
            if x[2]:
                continue
            rd, _, _ = select.select([x[0]], [], [], 0)
            try:
                if rd and not x[0].recv(4096):
                    x[2] = True  # closed by the server
                    continue
                x[0].sendall(b"a")
                x[1] += 1
            except (BrokenPipeError, ConnectionResetError):
                x[2] = True
    print("%d %d %d" % (healthz, sum(1 for x in socks if x[2]), max(x[1] for x in socks)))


def read_answer(s):
    """The status of one HTTP answer read whole from s, or "refused"."""
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            d = s.recv(65536)
            if not d:
                return "refused"
            got += d
    except (ConnectionResetError, socket.timeout):
        return "refused"
    head, _, body = got.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    while len(body) < n:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return head.split(b" ")[1].decode()


def perip(port, n):
    socks, last = [], [time.time()]

    def tick():
        if time.time() - last[0] >= 0.5:
            for s in socks:
                s.sendall(b"a")
            last[0] = time.time()

    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        st = read_answer(s)
        if st != "200":
            print("setup", st)
            return
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        socks.append(s)
        tick()
    def one(source):
        c = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        try:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return "refused"
        st = read_answer(c)
        c.close()
        return st
    same = one("127.0.0.1")
    tick()
    other = one("127.0.0.2")
    # the trickling ones are still open: the limit, not a timeout, refused it
    alive = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            alive += 1
        s.close()
    print(same, other, alive)


def post(port, token, path, out):
    lines = open(path).read().splitlines()
    o = open(out, "a")
    for line in lines:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("POST", "/v1/events", body=line,
                      headers={"Authorization": "Bearer " + token,
                               "Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
            c.close()
        except (ConnectionError, OSError, http.client.HTTPException):
            break
        if r.status != 202:
            continue
        for e in json.loads(body)["results"]:
            if e["status"] in ("accepted", "duplicate"):
                o.write(e["id"] + "\n")
        o.flush()
    o.close()


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "get":
        get(port, sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif cmd in ("big", "chunked"):
        big(port, sys.argv[3], int(sys.argv[4]), cmd == "chunked")
    elif cmd == "slow":
        slow(port, int(sys.argv[3]), float(sys.argv[4]))
    elif cmd == "trickle":
        trickle(port, sys.argv[3], int(sys.argv[4]))
    elif cmd == "headers":
        headers(port, int(sys.argv[3]))
    elif cmd == "perip":
        perip(port, int(sys.argv[3]))
    elif cmd == "post":
        post(port, sys.argv[3], sys.argv[4], sys.argv[5])
