"""Stub servers on 127.0.0.1 for the prober's tests: pools in several dialects, and things
that are not pools (HTTP, silence, garbage, a closed port). Ephemeral ports only.

Every server records when it accepted each connection (``accepts``, monotonic seconds) and
every line or request it received (``received``), so tests can check the rate limit and
that nothing but opening messages was sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"

SUBSCRIBE_RESULT = [[["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"],
                     ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4]
SET_DIFFICULTY = {"id": None, "method": "mining.set_difficulty", "params": [8192]}
NOTIFY = {"id": None, "method": "mining.notify", "params": [
    "bf", "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
    "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
    [], "00000002", "1c2ac4af", "504e86b9", False]}
ETH_SUBSCRIBE_RESULT = [["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f",
                         "EthereumStratum/1.0.0"], "080c"]
ETH_NOTIFY = {"id": None, "method": "mining.notify", "params": [
    "bf0488aa", "abad8f99f3918bf903c6a909d9bbc0fdfa5a2f4b9cb1196175ec825c6610126c",
    "645cf20198c2f3861e947d4f67e3ab63b7b2e24dcc9095bd9123e7b33371f6cc", True]}
CN_JOB = {"blob": "1010c9c4b7ab06" + "00" * 69, "job_id": "2b70", "target": "b88d0600",
          "algo": "rx/0", "height": 3312346, "seed_hash": "9a" * 32}
ETH_WORK = ["0x645cf20198c2f3861e947d4f67e3ab63b7b2e24dcc9095bd9123e7b33371f6cc",
            "0xabad8f99f3918bf903c6a909d9bbc0fdfa5a2f4b9cb1196175ec825c6610126c",
            "0x0000000112e0be826d694b2e62d01511f12a6061fbaec8bc02357593e70e52ba"]


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class StubServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server on 127.0.0.1 whose connections ``handle(server, sock)`` serves,
    optionally behind TLS (``tls``: a server-side SSLContext)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handle: Callable[[StubServer, socket.socket], None],
                 tls: ssl.SSLContext | None = None, host: str = LOOPBACK) -> None:
        self.handle_conn, self.tls = handle, tls
        self.accepts: list[float] = []
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                sock.settimeout(10)
                if server.tls is not None:
                    try:
                        sock = server.tls.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError):
                        return
                try:
                    server.handle_conn(server, sock)
                except OSError:
                    pass

        super().__init__((host, 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        conn = super().get_request()
        with self.lock:
            self.accepts.append(time.monotonic())
        return conn

    def record(self, data: bytes) -> None:
        with self.lock:
            self.received.append(data)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def _lines(server: StubServer, sock: socket.socket):
    """The JSON messages a client sends, one per line, until it closes."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError, ssl.SSLError):
            return
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            server.record(raw)
            try:
                yield json.loads(raw)
            except ValueError:
                yield None


def pool(dialects: set[str]) -> Callable[[StubServer, socket.socket], None]:
    """A pool answering the opening messages of ``dialects`` (stratum-v1,
    ethereumstratum-1, ethproxy, cryptonote) and "Unsupported method" to the rest."""

    def handle(server: StubServer, sock: socket.socket) -> None:
        for msg in _lines(server, sock):
            if msg is None:
                sock.sendall(b'{"id":null,"result":null,"error":[20,"Parse error",null]}\n')
                continue
            method, params, id_ = msg.get("method"), msg.get("params"), msg.get("id")
            eth = isinstance(params, list) and "EthereumStratum/1.0.0" in params
            if method == "mining.subscribe" and eth and "ethereumstratum-1" in dialects:
                sock.sendall(_line({"id": id_, "result": ETH_SUBSCRIBE_RESULT, "error": None}))
                sock.sendall(_line({"id": None, "method": "mining.set_difficulty",
                                    "params": [0.5]}))
            elif method == "mining.subscribe" and not eth and "stratum-v1" in dialects:
                sock.sendall(_line({"id": id_, "result": SUBSCRIBE_RESULT, "error": None}))
                time.sleep(0.01)  # the job comes in its own segment, as pools do
                sock.sendall(_line(SET_DIFFICULTY) + _line(NOTIFY))
            elif method == "mining.authorize" and dialects & {"stratum-v1", "ethereumstratum-1"}:
                sock.sendall(_line({"id": id_, "result": True, "error": None}))
                if "ethereumstratum-1" in dialects:
                    sock.sendall(_line(ETH_NOTIFY))
            elif method == "eth_submitLogin" and "ethproxy" in dialects:
                sock.sendall(_line({"id": id_, "jsonrpc": "2.0", "result": True}))
            elif method == "eth_getWork" and "ethproxy" in dialects:
                sock.sendall(_line({"id": id_, "jsonrpc": "2.0", "result": ETH_WORK}))
            elif method == "login" and "cryptonote" in dialects:
                sock.sendall(_line({"id": id_, "jsonrpc": "2.0", "error": None, "result": {
                    "id": "479a7e6b-6f2c", "job": CN_JOB, "extensions": ["algo", "nicehash"],
                    "status": "OK"}}))
            else:
                sock.sendall(_line({"id": id_, "jsonrpc": "2.0",
                                    "error": {"code": -32601, "message": "Unsupported method"}}))

    return handle


def rejecting_pool(server: StubServer, sock: socket.socket) -> None:
    """A CryptoNote pool that turns the probe's login down (it is no wallet address)."""
    for msg in _lines(server, sock):
        id_ = msg.get("id") if msg else None
        if msg and msg.get("method") == "login":
            sock.sendall(_line({"id": id_, "jsonrpc": "2.0", "result": None, "error": {
                "code": -1, "message": "Invalid address used for login"}}))
        else:
            sock.sendall(_line({"id": id_, "jsonrpc": "2.0",
                                "error": {"code": -32601, "message": "Method not found"}}))


def json_rpc_node(server: StubServer, sock: socket.socket) -> None:
    """A JSON-RPC service that is no pool: every method is unknown to it."""
    for msg in _lines(server, sock):
        method = msg.get("method") if msg else None
        sock.sendall(_line({"jsonrpc": "2.0", "id": msg.get("id") if msg else None, "error": {
            "code": -32601, "message": f"the method {method} does not exist/is not available"}}))


def _read_http(server: StubServer, sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and b"\n" not in data[:1] and len(data) < 65536:
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        data += chunk
        if data.lstrip()[:1] == b"{" and b"\n" in data:
            break
        if not data[:4].isalpha():  # no request line (a TLS ClientHello): answer 400 now
            break
    server.record(data)
    return data


def http_server(server: StubServer, sock: socket.socket) -> None:
    """A web server: 400 to what is not HTTP, 404 to the rest."""
    data = _read_http(server, sock)
    status = "404 Not Found" if data[:4] in (b"POST", b"GET ") else "400 Bad Request"
    body = b"<html><body>nothing here</body></html>"
    sock.sendall(f"HTTP/1.1 {status}\r\nServer: stub\r\nContent-Type: text/html\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


def getwork_pool(server: StubServer, sock: socket.socket) -> None:
    """An old getwork pool over HTTP (everything else gets a 400)."""
    data = _read_http(server, sock)
    if not data.startswith(b"POST"):
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    body = json.dumps({"id": 0, "error": None, "result": {
        "data": "00000001" + "00" * 124, "target": "ff" * 28 + "00000000"}}).encode()
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Long-Polling: /LP\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def silent(server: StubServer, sock: socket.socket) -> None:
    """Accepts, reads, never answers (until the client goes)."""
    for _ in _lines(server, sock):
        pass


GARBAGE = bytes([0x00, 0xff, 0x13, 0x37]) + b"\x80\x81garbage\xfe" * 4


def garbage(server: StubServer, sock: socket.socket) -> None:
    """Answers anything with bytes that are no protocol."""
    try:
        sock.recv(4096)
    except OSError:
        pass
    sock.sendall(GARBAGE)


def banner(server: StubServer, sock: socket.socket) -> None:
    """Speaks first, like SSH."""
    sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    try:
        sock.recv(4096)
    except OSError:
        pass


def closed_port() -> int:
    """A loopback port with nothing listening (refused)."""
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------- certificates


def make_cert(directory: Path, names: tuple[str, ...] = ("pool.example.test",),
              ca: tuple | None = None) -> tuple[Path, Path, object, object]:
    """A certificate for ``names`` (and 127.0.0.1), self-signed or signed by ``ca`` (its
    (cert, key)); written as PEM into ``directory``. Returns (cert path, key path, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer, signer = (ca[0].subject, ca[1]) if ca else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=30)))
    if names and names[0] != "poolwatch test CA":
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [*map(x509.DNSName, names), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    cert = builder.sign(signer, hashes.SHA256())
    stem = names[0].replace(" ", "_")
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, cert, key


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx
