"""A stand-in for Kaggle's API and file host, reached by Kaggle's own client through a proxy.

The client (kaggle / kagglesdk) talks to https://api.kaggle.com as it does for users. HTTPS_PROXY
routes it here, where each CONNECT tunnel is answered with TLS under a certificate for that host
from a test CA (REQUESTS_CA_BUNDLE), as a corporate proxy would. It answers ListDataFiles and
DownloadDataFile (a redirect to the file, as Kaggle's signed URLs are), serves files with Range
requests, checks the legacy key's basic auth, and on request: refuses downloads with 403 (rules
not accepted), reports a size, cuts a download part-way, or trickles it.
"""

import base64
import datetime
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from file_host import send_file

USER, KEY = "someone", "0123456789abcdef"
HOST = "api.kaggle.com"


def stand_in_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for HOST, written to ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stand-in test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return paths


class KaggleStandin(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes], certificate: Path, key: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(certificate, key)
        self.files = files
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.rules_accepted = True
        self.reported_sizes: dict[str, int] = {}
        self.cut_after: int | None = None  # bytes into the next file response, once
        self.trickle_seconds = 0.0  # pause between 64 KiB chunks of file responses

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: KaggleStandin
    protocol_version = "HTTP/1.1"

    def do_CONNECT(self):  # noqa: N802 (http.server's name)
        """The proxy's tunnel to HOST:443, answered here under TLS."""
        if self.path.split(":")[0] != HOST:
            self.send_error(502, f"the stand-in is {HOST} only")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb", buffering=0)
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
        if self.headers.get("Authorization") == expected:
            return True
        self.answer(401, {"code": 401, "message": "Unauthenticated"})
        return False

    def do_POST(self):  # noqa: N802 (http.server's name)
        path = urlsplit(self.path).path
        self.server.requests.append((path, None))
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length) or b"{}")
        if not self.authorised():
            return
        method = path.rsplit("/", 1)[-1]
        if method == "ListDataFiles":
            files = [{"name": name, "totalBytes": self.server.reported_sizes.get(name, len(data))}
                     for name, data in self.server.files.items()]  # fmt: skip
            self.answer(200, {"files": files})
        elif method == "DownloadDataFile":
            if not self.server.rules_accepted:
                self.answer(403, {"code": 403, "message": "You must accept this competition's "
                                  "rules before you'll be able to download files."})  # fmt: skip
                return
            name = request.get("fileName")
            if name not in self.server.files:
                self.answer(404, {"code": 404, "message": "Not found"})
                return
            self.send_response(302)
            self.send_header("Location", f"https://{HOST}/files/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(404, {"code": 404, "message": f"no {method} here"})

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        self.server.requests.append((path, self.headers.get("Range")))
        name = path.rsplit("/", 1)[-1]
        body = self.server.files.get(name)
        if body is None:
            self.send_error(404)
            return
        cut, self.server.cut_after = self.server.cut_after, None
        identity = {"ETag": f'"{hash(body) & 0xFFFFFFFF:x}"',
                    "Last-Modified": "Wed, 02 Dec 2026 00:00:00 GMT"}  # fmt: skip
        send_file(self, body, cut, self.server.trickle_seconds, identity)

    def log_message(self, *args):
        pass
