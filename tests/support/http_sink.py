"""HTTP sink for tests: records every request and answers from a script.
Run it with /usr/bin/python3 (or any python3: standard library only).

  http_sink.py [--port N] [--log FILE] [--status 429,429,500]
               [--default 200] [--body TEXT] [--match SUBSTR=STATUS ...]
               [--delay-ms N] [--hold SUBSTR] [--forever]

Prints "PORT <n>" on stdout once it listens (port 0 picks a free one).
HTTP/1.1 with keep-alive, one thread per connection. It serves until its
stdin closes (a test holds the other end), or with --forever until SIGTERM.

Answers: the next status of --status (consumed in order, one per
request), then --default; a request whose body (or path) contains SUBSTR
of a --match rule gets that STATUS instead, every time. Status 0: the
request is read and recorded, then the connection closed without a
reply (a server that took the request and died). The response body
is --body with {seq} (the request's number, from 1) and {status}
replaced; by default {"id": "m-{seq}"} for 2xx and
{"error": "status {status}"} otherwise, as application/json.

A request whose body (or path) contains the --hold SUBSTR is recorded,
then answered only after POST /_sink/release (a call held in flight for
as long as the test wants).

Records: one JSON object per line in --log (flushed per request):
  {"seq": 1, "method": "POST", "path": "/sms?x=1", "headers": {...},
   "body": "...", "status": 200}
Control, for tests that change the script while it runs:
  POST /_sink/script   {"status": [429, 200], "default": 200} replaces it
  GET  /_sink/requests the recorded requests, as a JSON array
  POST /_sink/reset    forgets the recorded requests
  POST /_sink/release  answers the held requests, and holds no more
(control requests are not recorded.)
"""
import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"status": [], "default": 200, "seq": 0, "requests": [], "log": None,
         "body": None, "match": [], "delay": 0, "hold": None}
released = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/_sink/"):
            with lock:
                if self.path == "/_sink/script":
                    s = json.loads(body or b"{}")
                    state["status"] = list(s.get("status", []))
                    state["default"] = s.get("default", state["default"])
                    return self._reply(200, "{}")
                if self.path == "/_sink/requests":
                    return self._reply(200, json.dumps(state["requests"]))
                if self.path == "/_sink/reset":
                    state["requests"] = []
                    return self._reply(200, "{}")
                if self.path == "/_sink/release":
                    released.set()
                    return self._reply(200, "{}")
            return self._reply(404, "{}")
        text = body.decode("utf-8", "replace")
        with lock:
            state["seq"] += 1
            seq = state["seq"]
            status = None
            for sub, st in state["match"]:
                if sub in text or sub in self.path:
                    status = st
            if status is None:
                status = state["status"].pop(0) if state["status"] else state["default"]
            rec = {"seq": seq, "method": self.command, "path": self.path,
                   "headers": {k: v for k, v in self.headers.items()},
                   "body": text, "status": status}
            state["requests"].append(rec)
            if state["log"]:
                state["log"].write(json.dumps(rec) + "\n")
                state["log"].flush()
        if state["hold"] and (state["hold"] in text or state["hold"] in self.path):
            released.wait()
        if state["delay"]:
            time.sleep(state["delay"] / 1000.0)
        if status == 0:
            self.close_connection = True
            return
        if state["body"] is not None:
            out = state["body"].replace("{seq}", str(seq)).replace("{status}", str(status))
        elif 200 <= status < 300:
            out = json.dumps({"id": "m-%d" % seq})
        else:
            out = json.dumps({"error": "status %d" % status})
        self._reply(status, out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--status", default="")
    p.add_argument("--default", type=int, default=200)
    p.add_argument("--body")
    p.add_argument("--match", action="append", default=[])
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--hold")
    p.add_argument("--forever", action="store_true")
    a = p.parse_args()
    global args_forever
    args_forever = a.forever
    if args_forever:  # before any thread starts: sigwait takes them
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    state["status"] = [int(x) for x in a.status.split(",") if x]
    state["default"] = a.default
    state["body"] = a.body
    state["delay"] = a.delay_ms
    state["hold"] = a.hold
    for m in a.match:
        sub, st = m.rsplit("=", 1)
        state["match"].append((sub, int(st)))
    if a.log:
        state["log"] = open(a.log, "a")
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print("PORT %d" % srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        if args_forever:
            signal.sigwait([signal.SIGTERM, signal.SIGINT])
        else:
            sys.stdin.read()  # until the test closes our stdin or kills us
    except KeyboardInterrupt:
        pass
    srv.shutdown()


if __name__ == "__main__":
    main()
