"""An SMTP server for tests that gives up mid-transaction: it accepts the
envelope (MAIL, RCPT: 250), then answers DATA with 421 and closes the
connection, while the client is still sending (pipelined) or about to
send the message. A client that writes on is writing to a closed socket.

  smtp_hangup.py [--port N]

Prints "PORT <n>" once it listens (0 picks a free one); serves until its
stdin closes. Counts nothing: every message it sees is refused.
"""
import argparse
import asyncio
import sys


async def session(reader, writer):
    def say(line):
        writer.write((line + "\r\n").encode())

    say("220 hangup.test ESMTP")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                say("250-hangup.test")
                say("250-PIPELINING")
                say("250 8BITMIME")
            elif verb == b"HELO":
                say("250 hangup.test")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                say("250 OK")
            elif verb == b"DATA":
                say("421 4.3.2 Service shutting down, closing transmission channel")
                await writer.drain()
                break
            elif verb == b"QUIT":
                say("221 Bye")
                break
            else:
                say("502 5.5.2 Command not recognized")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = await asyncio.start_server(session, "127.0.0.1", args.port)
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or (
        sys.stdin.buffer.read1(4096) or done.set_result(None)))
    await done
    server.close()


asyncio.run(main())
