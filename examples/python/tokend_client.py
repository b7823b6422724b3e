#!/usr/bin/env python3
"""tokend_client — a Python client of tokend written from two documents
only: the wire contract `proto/tokend.proto` and `docs/protocol.md`.

It speaks NNG's SP framing itself over plain sockets (no NNG binding):
the 8-byte SP header exchange, 64-bit big-endian length-prefixed messages
(with a 0x01 type byte first on ipc://), the REQ protocol's 32-bit request
id with its high bit set in front of each request, and the tokend.v1
`Request`/`Reply` envelope inside. `tls+tcp://` is the same inside TLS 1.2.

The protobuf module comes from the .proto, generated where you like and
never committed:

    protoc --python_out=OUT -I proto proto/tokend.proto
    PYTHONPATH=OUT python3 examples/python/tokend_client.py --help

As a library:

    c = Client("tcp://127.0.0.1:7450", credential=admin_token)
    token, info = c.create("partner:acme", "ERP sync", ["orders:read"])
    verdict = c.verify(token, ["orders:read"])   # verdict.reason == pb.OK
    for info in c.list_all("partner:acme"): ...
    c.revoke(id=info.id)                          # 1

A call that fails raises TokendError (subclasses per status, e.g.
NotFoundError, DeadlineExceededError), with .status, .name, .message.
A Verify whose token is not valid is not a failure: the call succeeds and
VerifyResponse.reason says why (MALFORMED, NOT_FOUND, EXPIRED,
INSUFFICIENT_ABILITY).

The plain text of a token (a credential, a new token) is never put into an
exception or printed, except the new token of `create`, on stdout, once.
"""

import argparse
import itertools
import json
import os
import random
import socket
import ssl
import struct
import sys
import time

try:
    import tokend_pb2 as pb
except ImportError as e:
    sys.stderr.write(
        "tokend_client: cannot import tokend_pb2 (%s). Generate it from the "
        "contract: protoc --python_out=OUT -I proto proto/tokend.proto, and put "
        "OUT on PYTHONPATH (needs the protobuf package: Debian's "
        "python3-protobuf).\n" % e)
    if __name__ == "__main__":
        sys.exit(2)
    raise

from google.protobuf import json_format

# --- the SP layer (docs/protocol.md, "Connection" and "Messages") ---

SP_REQ = 0x30  # our protocol id: REQ v0
SP_REP = 0x31  # the service's: REP v0
IPC_MSG = 0x01  # ipc:// message type byte of a normal message
# Ceiling on a reply we accept (the C client's too); a ListTokens page
# stays under 1 MiB.
MAX_REPLY = 16 * 1024 * 1024


def _sp_header(proto):
    return b"\x00SP\x00" + struct.pack(">H", proto) + b"\x00\x00"


# --- errors: one class per Status, built from the generated enum ---


class TokendError(Exception):
    """A call that failed: `status` (int, tokend.v1.Status), `name`
    ("NOT_FOUND") and the service's (or this client's) `message`."""

    status = None

    def __init__(self, status, message):
        self.status = status
        self.name = pb.Status.Name(status) if status in pb.Status.values() else "UNKNOWN"
        self.message = message
        super().__init__("%s (%d): %s" % (self.name, status, message))


def _class_name(status_name):
    return "".join(w.capitalize() for w in status_name.split("_")) + "Error"


_ERRORS = {}
for _name, _number in pb.Status.items():
    if _number != pb.OK:
        _cls = type(_class_name(_name), (TokendError,), {"status": _number})
        _ERRORS[_number] = _cls
        globals()[_cls.__name__] = _cls


def error(status, message):
    """The TokendError subclass instance for `status`."""
    return _ERRORS.get(status, TokendError)(status, message)


# --- the connection ---


def parse_url(url):
    """("tcp", (host, port)) | ("ipc", path) | ("tls+tcp", (host, port))."""
    for scheme in ("tls+tcp", "tcp", "ipc"):
        prefix = scheme + "://"
        if url.startswith(prefix):
            rest = url[len(prefix):]
            break
    else:
        raise ValueError("URL %r: want tcp://HOST:PORT, tls+tcp://HOST:PORT or "
                         "ipc:///PATH" % url)
    if scheme == "ipc":
        if not rest:
            raise ValueError("URL %r: no socket path" % url)
        return scheme, rest
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("URL %r: want %s://HOST:PORT" % (url, scheme))
    return scheme, (host.strip("[]"), int(port))


class Client:
    """One connection to tokend, opened on first use and again after a
    failure; one call at a time (use one Client per thread).

    url: tcp://HOST:PORT, ipc:///PATH or tls+tcp://HOST:PORT.
    credential: the caller's tokend token, sent with every call (or None).
    timeout: seconds a call may take in all (connect, send, reply); it is
      also sent as the request's absolute deadline.
    tls_ca_file, tls_cert_file, tls_key_file, tls_server_name: for
      tls+tcp:// (the service is always verified against tls_ca_file).
    """

    def __init__(self, url, credential=None, timeout=5.0, tls_ca_file=None,
                 tls_cert_file=None, tls_key_file=None, tls_server_name=None):
        self.scheme, self.addr = parse_url(url)
        self.url = url
        self.credential = credential or ""
        self.timeout = timeout
        self._tls = None
        if self.scheme == "tls+tcp":
            if not tls_ca_file:
                raise ValueError("a tls+tcp:// URL needs tls_ca_file")
            ctx = ssl.create_default_context(cafile=tls_ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls_cert_file:
                ctx.load_cert_chain(tls_cert_file, tls_key_file)
            self._tls = (ctx, tls_server_name or self.addr[0])
        self._sock = None
        # The envelope's request_id: 64 bits, from a random start; the SP
        # request id: 31 bits of a counter with the high bit set.
        self._request_ids = itertools.count(random.getrandbits(32) << 32 | 1)
        self._sp_ids = itertools.count(random.getrandbits(31) or 1)

    # -- SP framing --

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed by the service")
            buf += chunk
        return bytes(buf)

    def _connect(self, deadline):
        self._settimeout(deadline)
        try:
            if self.scheme == "ipc":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self._left(deadline))
                s.connect(self.addr)
            else:
                s = socket.create_connection(self.addr, timeout=self._left(deadline))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._tls is not None:
                    ctx, name = self._tls
                    s = ctx.wrap_socket(s, server_hostname=name)
        except (OSError, ssl.SSLError) as e:
            raise error(pb.UNAVAILABLE, "cannot connect to %s: %s" % (self.url, e))
        self._sock = s
        try:
            s.sendall(_sp_header(SP_REQ))
            peer = self._recv_exact(8)
        except (OSError, ConnectionError) as e:
            self.close()
            raise error(pb.UNAVAILABLE, "no SP header from %s: %s" % (self.url, e))
        if peer != _sp_header(SP_REP):
            self.close()
            raise error(pb.UNAVAILABLE, "%s is not a REP endpoint (header %s)"
                        % (self.url, peer.hex()))

    def _send_msg(self, body):
        frame = struct.pack(">Q", len(body)) + body
        if self.scheme == "ipc":
            frame = bytes([IPC_MSG]) + frame
        self._sock.sendall(frame)

    def _recv_msg(self):
        if self.scheme == "ipc":
            kind = self._recv_exact(1)[0]
            if kind != IPC_MSG:
                raise ConnectionError("ipc message type %d, not 1" % kind)
        (length,) = struct.unpack(">Q", self._recv_exact(8))
        if length > MAX_REPLY:
            raise ConnectionError("reply of %d bytes is over %d" % (length, MAX_REPLY))
        return self._recv_exact(length)

    @staticmethod
    def _left(deadline):
        return max(deadline - time.monotonic(), 0.001)

    def _settimeout(self, deadline):
        if self._sock is not None:
            self._sock.settimeout(self._left(deadline))

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    # -- one call --

    def call(self, method, request, response_cls, deadline_unix_ms=None):
        """Sends `request` (a message) to `method` (its bare name, e.g.
        "Verify") and returns the decoded `response_cls`. Raises
        TokendError. deadline_unix_ms: the envelope's deadline (default:
        now + timeout)."""
        deadline = time.monotonic() + self.timeout
        if deadline_unix_ms is None:
            deadline_unix_ms = int(time.time() * 1000) + int(self.timeout * 1000)
        request_id = next(self._request_ids) & 0xFFFFFFFFFFFFFFFF
        sp_id = 0x80000000 | (next(self._sp_ids) & 0x7FFFFFFF)
        envelope = pb.Request(method=method, request_id=request_id,
                              deadline_unix_ms=deadline_unix_ms,
                              credential=self.credential,
                              payload=request.SerializeToString())
        if self._sock is None:
            self._connect(deadline)
        sent = False
        try:
            self._settimeout(deadline)
            self._send_msg(struct.pack(">I", sp_id) + envelope.SerializeToString())
            sent = True
            while True:
                self._settimeout(deadline)
                msg = self._recv_msg()
                if len(msg) >= 4 and struct.unpack(">I", msg[:4])[0] == sp_id:
                    break
                # A reply to an earlier request (one we gave up on): skip.
        except socket.timeout:
            self.close()
            if sent:
                raise error(pb.DEADLINE_EXCEEDED, "%s: no reply within %g s"
                            % (method, self.timeout))
            raise error(pb.UNAVAILABLE, "%s: could not send within %g s"
                        % (method, self.timeout))
        except (OSError, ConnectionError) as e:
            self.close()
            raise error(pb.UNAVAILABLE, "%s: connection to %s failed: %s"
                        % (method, self.url, e))
        reply = pb.Reply()
        try:
            reply.ParseFromString(msg[4:])
        except Exception as e:
            raise error(pb.BAD_MESSAGE, "%s reply could not be decoded: %s" % (method, e))
        # The service echoes request_id; a refusal of a request it could not
        # read (too large, not an envelope) carries 0.
        if reply.request_id != request_id and not (reply.status != pb.OK
                                                   and reply.request_id == 0):
            raise error(pb.BAD_MESSAGE, "%s reply answers request %d, not %d"
                        % (method, reply.request_id, request_id))
        if reply.status != pb.OK:
            raise error(reply.status, reply.message)
        out = response_cls()
        try:
            out.ParseFromString(reply.payload)
        except Exception as e:
            raise error(pb.BAD_MESSAGE, "%s reply payload could not be decoded: %s"
                        % (method, e))
        return out

    # -- TokenService --

    def create(self, owner, name, abilities, expires_in_seconds=0, metadata=None):
        """Creates a token; returns (plain text, TokenInfo)."""
        r = self.call("CreateToken", pb.CreateTokenRequest(
            owner=owner or "", name=name, abilities=list(abilities),
            expires_in_seconds=expires_in_seconds, metadata=metadata or {}),
            pb.CreateTokenResponse)
        return r.token, r.info

    def verify(self, token, abilities=(), mode="all"):
        """Checks a token; returns the VerifyResponse (reason, info)."""
        return self.call("Verify", pb.VerifyRequest(
            token=token, abilities=list(abilities),
            mode=pb.ANY if mode == "any" else pb.ALL), pb.VerifyResponse)

    def list(self, owner="", page_size=0, cursor=""):
        """One page: a ListTokensResponse (tokens, next_cursor)."""
        return self.call("ListTokens", pb.ListTokensRequest(
            owner=owner or "", page_size=page_size, cursor=cursor),
            pb.ListTokensResponse)

    def list_all(self, owner="", page_size=0):
        """Every TokenInfo of `owner`, page after page, oldest first."""
        cursor = ""
        while True:
            page = self.list(owner, page_size, cursor)
            yield from page.tokens
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def revoke(self, id=None, token=None, owner=None):
        """Revokes one token (by id or plain text) or every token of an
        owner (owner="" means the credential's own); returns how many."""
        given = [x is not None for x in (id, token, owner)]
        if sum(given) != 1:
            raise ValueError("give exactly one of id, token, owner")
        if id is not None:
            req = pb.RevokeRequest(id=id)
        elif token is not None:
            req = pb.RevokeRequest(token=token)
        else:
            req = pb.RevokeRequest(owner=owner)
        return self.call("Revoke", req, pb.RevokeResponse).revoked


# --- the command line ---

USAGE = """\
Commands print one JSON object on stdout. Exit status: 0 ok; 1 verify: the
token is not valid (reason in the JSON); 2 usage error; 3 the call failed
(its status on stderr, e.g. "tokend_client: NOT_FOUND (2): ...").
Environment: TOKEND_URL (default tcp://127.0.0.1:7450), TOKEND_CREDENTIAL
(the caller credential; never given on the command line)."""


def _json(msg):
    return json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                     including_default_value_fields=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tokend_client.py", epilog=USAGE,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="A tokend client over raw SP sockets.")
    ap.add_argument("--url", default=os.environ.get("TOKEND_URL", "tcp://127.0.0.1:7450"))
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call (5)")
    ap.add_argument("--tls-ca", help="CA file for tls+tcp://")
    ap.add_argument("--tls-cert", help="client certificate for tls+tcp://")
    ap.add_argument("--tls-key", help="its key")
    ap.add_argument("--tls-server-name", help="name the service's certificate has")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create", help="create a token (prints token and info)")
    p.add_argument("--owner", default="")
    p.add_argument("--name", required=True)
    p.add_argument("--ability", action="append", required=True)
    p.add_argument("--expires-in", type=int, default=0, help="seconds (0: none)")
    p.add_argument("--meta", action="append", default=[], help="KEY=VALUE")
    p = sub.add_parser("verify", help="check a token (read from stdin)")
    p.add_argument("--ability", action="append", default=[])
    p.add_argument("--any", action="store_true", help="any of the abilities suffices")
    p = sub.add_parser("list", help="list an owner's tokens (every page)")
    p.add_argument("--owner", default="")
    p.add_argument("--page-size", type=int, default=0)
    p = sub.add_parser("revoke", help="revoke by --id, --owner, or --token (stdin)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--id")
    g.add_argument("--owner")
    g.add_argument("--token", action="store_true", help="the token to revoke on stdin")
    p = sub.add_parser("raw", help="send METHOD with an empty payload; print the "
                       "reply's payload length (a probe of the envelope)")
    p.add_argument("method")
    p.add_argument("--deadline-unix-ms", type=int, default=None)
    args = ap.parse_args(argv)

    try:
        client = Client(args.url, credential=os.environ.get("TOKEND_CREDENTIAL"),
                        timeout=args.timeout, tls_ca_file=args.tls_ca,
                        tls_cert_file=args.tls_cert, tls_key_file=args.tls_key,
                        tls_server_name=args.tls_server_name)
    except (ValueError, OSError, ssl.SSLError) as e:
        ap.error(str(e))
    try:
        if args.command == "create":
            meta = {}
            for kv in args.meta:
                k, sep, v = kv.partition("=")
                if not sep:
                    ap.error("--meta wants KEY=VALUE")
                meta[k] = v
            token, info = client.create(args.owner, args.name, args.ability,
                                        args.expires_in, meta)
            print(json.dumps({"token": token, "info": _json(info)}))
        elif args.command == "verify":
            token = sys.stdin.readline().strip()
            r = client.verify(token, args.ability, "any" if args.any else "all")
            print(json.dumps(_json(r)))
            return 0 if r.reason == pb.OK else 1
        elif args.command == "list":
            tokens = [_json(t) for t in client.list_all(args.owner, args.page_size)]
            print(json.dumps({"tokens": tokens}))
        elif args.command == "revoke":
            if args.token:
                n = client.revoke(token=sys.stdin.readline().strip())
            elif args.id is not None:
                n = client.revoke(id=args.id)
            else:
                n = client.revoke(owner=args.owner)
            print(json.dumps({"revoked": n}))
        elif args.command == "raw":
            class Raw:  # the payload, undecoded
                def __init__(self):
                    self.data = b""

                def ParseFromString(self, data):
                    self.data = data

            class Empty:
                @staticmethod
                def SerializeToString():
                    return b""

            r = client.call(args.method, Empty, Raw, args.deadline_unix_ms)
            print(json.dumps({"payload_bytes": len(r.data)}))
    except TokendError as e:
        sys.stderr.write("tokend_client: %s\n" % e)
        return 3
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
