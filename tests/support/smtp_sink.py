"""SMTP sink for tests: an aiosmtpd server on 127.0.0.1 that stores what it
receives. Run it with /usr/bin/python3 (Debian's python3-aiosmtpd).

  smtp_sink.py --dir DIR [--port N] [--auth USER:PASS] [--die-after N]
               [--reject SUBSTR=CODE ...] [--forever] [--pipelining]
               [--size N] [--no-smtputf8] [--tls CERT:KEY] [--delay-ms N]
               [--hang SUBSTR[=N]] [--hold-after N]

Prints "PORT <n>" on stdout once it listens (port 0 picks a free one).
Every accepted message is DIR/<pid>-<seq>.eml (the exact DATA bytes, CRLF
line ends, dot-unstuffed; the pid keeps a restarted sink from overwriting) and one JSON line in DIR/log.jsonl:
  {"seq": 1, "mail_from": "...", "rcpt_tos": ["..."], "file": "<pid>-1.eml",
   "auth": "user or null", "session": <connection number>,
   "ehlo": "the client's EHLO name", "mail_options": ["SIZE=123", ...],
   "pipelined": true when RCPT had arrived before MAIL was answered,
   "tls": true when the session went through STARTTLS}
--auth        require AUTH (PLAIN or LOGIN) with these credentials
--die-after N after N messages are stored, the next DATA makes the process
              exit at once, with no reply (a server that goes away
              mid-batch; the test starts another on the same port)
--forever     serve until SIGTERM (default: until stdin closes)
--pipelining  announce PIPELINING (aiosmtpd reads pipelined commands anyway)
--size N      announce SIZE N and refuse larger messages (default 10 MB)
--no-smtputf8 do not announce SMTPUTF8 (aiosmtpd then refuses it)
--delay-ms N  wait N ms before answering each message's final dot
--hang SUBSTR[=N]  store the first N messages (all without =N) to a
              recipient containing SUBSTR as usual, then never answer their
              final dot (a server that took the message and went silent:
              the client's dot_timeout ends the session); later ones are
              answered
--hold-after N  after N messages are stored, every later one waits at its
              final dot, never stored nor answered (a server gone silent
              mid-campaign: each connection has one message on the wire);
              log.jsonl has {"held": ["..."]} for each
--tls         offer STARTTLS with this certificate and key (PEM files)
--reject      answer RCPT TO for recipients containing SUBSTR with CODE
              (550: permanent, 451: transient)
"""
import argparse
import asyncio
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.pipelining = args.pipelining
        self.reply = args.reply
        self.delay = (args.delay_ms or 0) / 1000.0
        self.die_after = args.die_after
        self.hold_after = args.hold_after
        self.hang, self.hang_left = None, 0
        if args.hang:
            sub, _, n = args.hang.partition("=")
            self.hang, self.hang_left = sub, int(n) if n else -1
        self.reject = []
        for r in args.reject or []:
            sub, code = r.rsplit("=", 1)
            self.reject.append((sub, int(code)))
        self.seq = 0
        self.sessions = 0
        self.log = open(os.path.join(self.dir, "log.jsonl"), "a", buffering=1)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.baton_session = self.sessions
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # what the client sent beyond MAIL before it had MAIL's reply
        pending = bytes(getattr(server._reader, "_buffer", b""))
        session.baton_pipelined = b"RCPT" in pending.upper()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for sub, code in self.reject:
            if sub in address:
                if code >= 500:
                    return "%d 5.1.1 <%s>: Recipient address rejected" % (code, address)
                return "%d 4.2.0 <%s>: try again later" % (code, address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hold_after is not None and self.seq >= self.hold_after:
            self.log.write(json.dumps({"held": envelope.rcpt_tos}) + "\n")
            await asyncio.sleep(86400)
        if self.die_after is not None and self.seq >= self.die_after:
            self.log.flush()
            os._exit(0)
        self.seq += 1
        name = "%d-%d.eml" % (os.getpid(), self.seq)
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        auth = session.auth_data
        if isinstance(auth, LoginPassword):
            auth = auth.login.decode()
        self.log.write(json.dumps({
            "seq": self.seq, "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos, "file": name,
            "auth": auth, "session": getattr(session, "baton_session", 0),
            "ehlo": getattr(session, "host_name", None),
            "mail_options": envelope.mail_options,
            "pipelined": getattr(session, "baton_pipelined", False),
            "tls": session.ssl is not None}) + "\n")
        if self.hang_left and any(self.hang in r for r in envelope.rcpt_tos):
            self.hang_left -= 1
            await asyncio.sleep(86400)  # until the client gives up and closes
        # the accepting reply as each names its id: Postfix, Amazon SES, Exim
        if self.reply == "ses":
            return "250 Ok 0100018c%08d-ses-000000" % self.seq
        if self.reply == "exim":
            return "250 OK id=1kX%04d-0003Ab-Cd" % self.seq
        return "250 2.0.0 Ok: queued as Q%06d" % self.seq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--auth")
    p.add_argument("--die-after", type=int)
    p.add_argument("--reject", action="append")
    p.add_argument("--forever", action="store_true")
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--size", type=int, default=10 * 1024 * 1024)
    p.add_argument("--no-smtputf8", action="store_true")
    p.add_argument("--tls")
    p.add_argument("--delay-ms", type=int)
    p.add_argument("--reply", choices=["postfix", "ses", "exim"], default="postfix")
    p.add_argument("--hang")
    p.add_argument("--hold-after", type=int)
    args = p.parse_args()
    global args_forever
    args_forever = args.forever
    if args_forever:  # before any thread starts: sigwait takes them
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    handler = Handler(args)
    kw = {"decode_data": False, "enable_SMTPUTF8": not args.no_smtputf8,
          "data_size_limit": args.size}
    if args.tls:
        import ssl
        cert, key = args.tls.split(":", 1)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        kw["tls_context"] = ctx
    if args.auth:
        user, pw = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == pw)
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        kw.update(auth_required=True, auth_require_tls=False, authenticator=authenticator)

    port = args.port
    if port == 0:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kw)
    controller.start()
    print("PORT %d" % port, flush=True)
    try:
        if args_forever:
            signal.sigwait([signal.SIGTERM, signal.SIGINT])
        else:
            sys.stdin.read()  # until the test closes our stdin or kills us
    except KeyboardInterrupt:
        pass
    controller.stop()


if __name__ == "__main__":
    main()
