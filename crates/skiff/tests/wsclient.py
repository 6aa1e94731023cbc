"""A minimal WebSocket client for the cluster tests, as non-kubectl Kubernetes clients
use the streaming endpoints: it connects to the API server with the admin
kubeconfig's client certificate, offers one subprotocol (or none), sends the given
messages (text or binary) at once, and prints every message the server sends until it
closes or stays idle, as JSON.

Input (stdin, JSON): {"kubeconfig": path, "path": "/api/v1/...", "protocol": str or
null, "send": [{"text": str} | {"binary": base64}], "idle": seconds}.
Output: {"status": int, "protocol": str, "messages": [{"op": "text"|"binary"|"close",
"data": str (text) or base64 (binary)}]}.
"""

import base64
import json
import os
import re
import socket
import ssl
import struct
import sys
import tempfile


def kubeconfig_creds(path):
    text = open(path).read()
    field = lambda name: base64.b64decode(re.search(name + r":\s*(\S+)", text).group(1))
    server = re.search(r"server:\s*https://([^:/\s]+):(\d+)", text)
    d = tempfile.mkdtemp()
    files = {}
    for key, name in (("ca", "certificate-authority-data"),
                      ("cert", "client-certificate-data"),
                      ("key", "client-key-data")):
        p = os.path.join(d, key)
        with open(p, "wb") as f:
            f.write(field(name))
        files[key] = p
    return server.group(1), int(server.group(2)), files


def frame(opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Reader:
    def __init__(self, sock, buf):
        self.sock, self.buf = sock, buf

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self):
        b0, b1 = self.need(2)
        opcode, n = b0 & 0x0F, b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.need(8))[0]
        mask = self.need(4) if b1 & 0x80 else None
        data = self.need(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return opcode, data


def main():
    req = json.load(sys.stdin)
    host, port, files = kubeconfig_creds(req["kubeconfig"])
    ctx = ssl.create_default_context(cafile=files["ca"])
    ctx.load_cert_chain(files["cert"], files["key"])
    raw = socket.create_connection((host, port), timeout=10)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET %s HTTP/1.1" % req["path"],
        "Host: %s:%d" % (host, port),
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " + key,
        "Sec-WebSocket-Version: 13",
    ]
    if req.get("protocol"):
        lines.append("Sec-WebSocket-Protocol: " + req["protocol"])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    head = head.decode(errors="replace")
    status = int(head.split(" ")[1]) if " " in head else 0
    proto = ""
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "sec-websocket-protocol":
            proto = v.strip()
    out = {"status": status, "protocol": proto, "messages": []}
    if status != 101:
        out["body"] = rest.decode(errors="replace")
        print(json.dumps(out))
        return
    for m in req.get("send", []):
        if "text" in m:
            sock.sendall(frame(1, m["text"].encode()))
        else:
            sock.sendall(frame(2, base64.b64decode(m["binary"])))
    sock.settimeout(req.get("idle", 5))
    reader = Reader(sock, rest)
    try:
        while True:
            opcode, data = reader.message()
            if opcode == 8:
                out["messages"].append({"op": "close", "data": base64.b64encode(data).decode()})
                break
            if opcode == 1:
                out["messages"].append({"op": "text", "data": data.decode()})
            elif opcode == 2:
                out["messages"].append({"op": "binary", "data": base64.b64encode(data).decode()})
    except (EOFError, socket.timeout, ssl.SSLError, OSError):
        pass
    print(json.dumps(out))


main()
