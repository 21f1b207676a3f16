"""An SMTP server on loopback for integration tests, keeping what it receives for tests to read.

    python tests/peers/smtp_peer.py --port 8026 [--smtp-port 8025] [--tag TEXT] [--pidfile FILE]

The control plane sends mail (invitations, verification links, receipts) through an SMTP relay.
This peer is that relay for tests: `aiosmtpd` (PyPI, pinned in infra/scripts/services.sh)
speaks SMTP on 127.0.0.1:`--smtp-port` and accepts every message, from any sender to any
recipient, with no authentication and no TLS (it offers neither AUTH nor STARTTLS, so a client
must be configured for plain, unauthenticated SMTP). Nothing is relayed anywhere: each message
is kept in memory, the newest 10,000 of them, and an HTTP server on 127.0.0.1:`--port` lets
tests read them:

- `GET /messages[?to=ADDRESS]`: the messages kept, oldest first, newest last; with `to`, only
  those whose envelope recipients include ADDRESS (compared without regard to case). Each is
  `{"from": envelope sender, "to": [envelope recipients], "subject": the Subject header decoded
  ("" when there is none), "body": the text/plain body with its transfer encoding
  (quoted-printable, base64) and charset undone and its line endings made `\\n`, taken from
  the text/plain part of a multipart message ("" when there is none), "received_at": unix
  seconds}`. The query is percent-decoded but `+` is kept as a `+`, as it belongs in addresses
  such as `a+tag@example.com`;
- `POST /_control/clear`: forgets every message kept and answers `{"cleared": N}`;
- `GET /_control/launcher`: answers `{"launcher": --tag}`, so a caller can tell whether the
  process listening is this peer, and which version.

infra/scripts/services.sh starts it with `--port` only; `--smtp-port` then defaults to the HTTP
port minus one (8025 beside the default 8026). Everything is lost when the process ends.
"""

import argparse
import collections
import email
import email.policy
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from aiosmtpd.controller import Controller

MAX_MESSAGES = 10_000


def log(text):
    sys.stderr.write(f"smtp-peer: {text}\n")
    sys.stderr.flush()


class Mailbox:
    """The messages received, oldest first; the oldest is dropped past MAX_MESSAGES."""

    def __init__(self, limit=MAX_MESSAGES):
        self.lock = threading.Lock()
        self.messages = collections.deque(maxlen=limit)

    def add(self, message):
        with self.lock:
            self.messages.append(message)

    def list(self, to=None):
        with self.lock:
            messages = list(self.messages)
        if to is None:
            return messages
        wanted = to.casefold()
        return [m for m in messages if any(r.casefold() == wanted for r in m["to"])]

    def clear(self):
        with self.lock:
            n = len(self.messages)
            self.messages.clear()
        return n


def parse_message(raw):
    """(subject, text/plain body) of a message as received, both decoded."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        subject = msg["subject"]
        subject = "" if subject is None else str(subject)
        part = msg.get_body(preferencelist=("plain",))
        body = "" if part is None else part.get_content()
        return subject, body.replace("\r\n", "\n")
    except Exception as e:  # a malformed message is still kept, and shown as well as it can be
        log(f"could not parse a message ({type(e).__name__}: {e}); keeping it undecoded")
        head, _, body = raw.partition(b"\r\n\r\n")
        subject = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("subject:"):
                subject = line[len("subject:"):].strip()
                break
        return subject, body.decode("utf-8", "replace").replace("\r\n", "\n")


class SmtpHandler:
    """aiosmtpd's handler: accepts every sender and recipient (aiosmtpd's defaults) and keeps
    every message."""

    def __init__(self, mailbox):
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        subject, body = parse_message(raw)
        message = {
            "from": envelope.mail_from or "",
            "to": list(envelope.rcpt_tos),
            "subject": subject,
            "body": body,
            "received_at": time.time(),
        }
        self.mailbox.add(message)
        log(f"message from {message['from']!r} to {message['to']!r}: {subject!r}")
        return "250 Message accepted for delivery"


def query_param(query, name):
    """The first value of `name` in a query string, percent-decoded, `+` kept as is."""
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if unquote(key) == name:
            return unquote(value) if sep else ""
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "smtp-peer"

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def reply(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/_control/launcher":
            self.reply(200, {"launcher": self.server.tag})
        elif path == "/messages":
            self.reply(200, self.server.mailbox.list(query_param(query, "to")))
        elif path == "/health":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": f"no such resource: GET {path}"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = self.path.partition("?")[0]
        if path == "/_control/clear":
            self.reply(200, {"cleared": self.server.mailbox.clear()})
        else:
            self.reply(404, {"error": f"no such resource: POST {path}"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8026, help="HTTP port (default 8026)")
    parser.add_argument(
        "--smtp-port", type=int, default=None, help="SMTP port (default: --port minus one)"
    )
    parser.add_argument("--tag", default="")
    parser.add_argument("--pidfile", help="where to write this process's id")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)
    smtp_port = args.port - 1 if args.smtp_port is None else args.smtp_port

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    mailbox = Mailbox()
    # SMTP first: the HTTP side answering is the sign that both are up.
    controller = Controller(
        SmtpHandler(mailbox),
        hostname="127.0.0.1",
        port=smtp_port,
        server_hostname="smtp-peer.localhost",  # not socket.getfqdn(), which may ask DNS
        enable_SMTPUTF8=True,
    )
    controller.start()
    log(f"SMTP on smtp://127.0.0.1:{smtp_port}")

    server = Server(("127.0.0.1", args.port), Handler)
    server.verbose = args.verbose
    server.mailbox = mailbox
    server.tag = args.tag
    log(f"listening on http://127.0.0.1:{args.port} (tag {args.tag})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
