"""A test-only stand-in for the SageMaker runtime on loopback.

It checks each request's SigV4 signature with botocore (answering a bad one
with SageMaker's 403 InvalidSignatureException body), forwards the body to a
container's `/invocations` (servebench serve), and answers as the runtime
does: InvokeEndpoint passes the container's body through;
InvokeEndpointWithResponseStream wraps each read of the container's stream in
an AWS event-stream `PayloadPart` frame. Frames are checked with botocore's
own event-stream decoder before use.

Usage: sagemaker_runtime.py UPSTREAM_URL ACCESS_KEY SECRET_KEY REGION
Prints `listening PORT` once ready. Exit 3 when botocore is missing.
"""

import http.client
import json
import re
import sys
import threading
import urllib.parse
import zlib
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.eventstream import EventStreamBuffer
except ImportError:
    sys.exit(3)

UPSTREAM, ACCESS_KEY, SECRET_KEY, REGION = sys.argv[1:5]
UP = urllib.parse.urlsplit(UPSTREAM)
PATH = re.compile(r"^/endpoints/([^/]+)/(invocations|invocations-response-stream)$")
SIGNATURE_MISMATCH = json.dumps(
    {
        "message": "The request signature we calculated does not match the signature "
        "you provided. Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details."
    }
).encode()
LOCK = threading.Lock()
SEEN = {"signed_ok": 0, "rejected": 0}


def frame(headers, payload):
    """One event-stream message: prelude, string headers, payload, CRCs."""
    hb = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        hb += bytes([len(n)]) + n + b"\x07" + len(v).to_bytes(2, "big") + v
    total = 12 + len(hb) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(hb).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    message = prelude + hb + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def payload_part(data):
    return frame(
        [
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
            (":message-type", "event"),
        ],
        data,
    )


def check_frames():
    buf = EventStreamBuffer()
    buf.add_data(payload_part(b"data: {}\n\n") + payload_part("ü".encode()))
    got = [(m.headers[":event-type"], m.payload) for m in buf]
    assert got == [("PayloadPart", b"data: {}\n\n"), ("PayloadPart", "ü".encode())], got


def signature_ok(handler, body):
    auth = handler.headers.get("Authorization", "")
    m = re.match(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
        auth,
    )
    if not m or m.group(1) != ACCESS_KEY or m.group(3) != REGION:
        return False
    service, signed = m.group(4), m.group(5).split(";")
    amz_date = handler.headers.get("X-Amz-Date", "")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    except ValueError:
        return False
    headers = {h: handler.headers.get(h, "") for h in signed if h not in ("x-amz-date",)}
    request = AWSRequest(
        method=handler.command,
        url=f"http://{handler.headers['Host']}{handler.path}",
        headers=headers,
        data=body,
    )
    token = handler.headers.get("X-Amz-Security-Token")
    creds = Credentials(ACCESS_KEY, SECRET_KEY, token)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: when):
        botocore.auth.SigV4Auth(creds, service, REGION).add_auth(request)
    return request.headers["Authorization"] == auth


class Runtime(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                body = json.dumps(SEEN).encode()
            return self.reply(200, body, [("Content-Type", "application/json")])
        self.reply(404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        m = PATH.match(self.path)
        if not m:
            return self.reply(404, b'{"message":"no such operation"}')
        if not signature_ok(self, body):
            with LOCK:
                SEEN["rejected"] += 1
            return self.reply(
                403,
                SIGNATURE_MISMATCH,
                [
                    ("Content-Type", "application/json"),
                    ("x-amzn-ErrorType", "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"),
                ],
            )
        with LOCK:
            SEEN["signed_ok"] += 1
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        conn.request(
            "POST",
            "/invocations",
            body,
            {"Content-Type": self.headers.get("Content-Type", "application/json")},
        )
        up = conn.getresponse()
        streaming = m.group(2) == "invocations-response-stream"
        if not streaming or up.status != 200:
            data = up.read()
            conn.close()
            return self.reply(
                up.status,
                data,
                [("Content-Type", up.getheader("Content-Type", "application/json"))],
            )
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("X-Amzn-SageMaker-Content-Type", up.getheader("Content-Type", ""))
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = up.read1(65536)
            if not data:
                break
            f = payload_part(data)
            self.wfile.write(f"{len(f):x}\r\n".encode() + f + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        conn.close()


check_frames()
server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
