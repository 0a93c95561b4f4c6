#!/usr/bin/env python3
"""Protocol-level health probes for ops/engines.sh (standard library only).

A port that accepts connections is not yet a broker or a database that answers, so
ops/engines.sh asks each engine a real question in its own protocol:

    probe.py kafka HOST PORT   Metadata request; ready once a broker and an active controller are reported
    probe.py mongo HOST PORT   OP_MSG {ping: 1} on "admin"; ready once it answers ok: 1

Exit status 0 = ready, 1 = not ready (reason on stderr). Deliberately free of the project's
virtualenv: it must work on a fresh machine before anything Python-side is installed.
"""

from __future__ import annotations

import socket
import struct
import sys

TIMEOUT_S = 3.0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by peer")
        buf += chunk
    return buf


# --------------------------------------------------------------------------- Kafka


def _kafka_request(sock: socket.socket, api_key: int, api_version: int, corr: int, body: bytes) -> bytes:
    client_id = b"snapfix-engines-probe"
    # Request header v1: api_key int16, api_version int16, correlation_id int32, client_id string.
    header = struct.pack(">hhih", api_key, api_version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    resp = _recv_exact(sock, size)
    (got_corr,) = struct.unpack(">i", resp[:4])
    if got_corr != corr:
        raise ValueError(f"correlation id mismatch: sent {corr}, got {got_corr}")
    return resp[4:]  # response header v0 is only the correlation id


def probe_kafka(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        # Metadata v4 (API key 3): the oldest version every 4.x broker keeps (KIP-896 dropped v0-v3 in
        # 4.0.0) and still non-flexible. Body: topics = null array (-1), i.e. "all topics", then
        # allow_auto_topic_creation = false. Only brokers and the controller id are looked at.
        resp = _kafka_request(sock, 3, 4, 1, struct.pack(">ib", -1, 0))
    pos = 4  # throttle_time_ms
    (n_brokers,) = struct.unpack_from(">i", resp, pos)
    pos += 4
    brokers = []
    for _ in range(n_brokers):
        node_id, hlen = struct.unpack_from(">ih", resp, pos)
        pos += 6
        bhost = resp[pos : pos + hlen].decode()
        pos += hlen
        (bport, rlen) = struct.unpack_from(">ih", resp, pos)
        pos += 6
        if rlen > 0:
            pos += rlen
        brokers.append(f"{node_id}@{bhost}:{bport}")
    (clen,) = struct.unpack_from(">h", resp, pos)  # cluster_id, nullable string
    cluster_id = resp[pos + 2 : pos + 2 + clen].decode() if clen >= 0 else None
    pos += 2 + max(clen, 0)
    (controller_id,) = struct.unpack_from(">i", resp, pos)
    if not brokers:
        raise RuntimeError("metadata lists no broker yet")
    if controller_id < 0:
        raise RuntimeError("metadata reports no active controller yet")
    return f"cluster={cluster_id} brokers={','.join(brokers)} controller={controller_id}"


# --------------------------------------------------------------------------- MongoDB wire protocol


def _bson_cstring(s: str) -> bytes:
    return s.encode() + b"\x00"


def _bson_doc(elements: bytes) -> bytes:
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


def probe_mongo(host: str, port: int) -> str:
    # {ping: 1 (int32), $db: "admin"}
    db = b"admin\x00"
    doc = _bson_doc(
        b"\x10"
        + _bson_cstring("ping")
        + struct.pack("<i", 1)
        + b"\x02"
        + _bson_cstring("$db")
        + struct.pack("<i", len(db))
        + db
    )
    body = struct.pack("<I", 0) + b"\x00" + doc  # flagBits, section kind 0 (body), document
    OP_MSG = 2013
    header = struct.pack("<iiii", 16 + len(body), 1, 0, OP_MSG)
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendall(header + body)
        length, _req, _resp_to, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        payload = _recv_exact(sock, length - 16)
    if opcode != OP_MSG:
        raise ValueError(f"unexpected reply opcode {opcode}")
    if payload[4] != 0:
        raise ValueError("reply has no body section")
    reply = payload[5:]
    # Walk the top-level elements of the reply document looking for "ok".
    (doc_len,) = struct.unpack_from("<i", reply, 0)
    pos, end = 4, doc_len - 1
    fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
    while pos < end:
        etype = reply[pos]
        pos += 1
        name_end = reply.index(b"\x00", pos)
        name = reply[pos:name_end].decode()
        pos = name_end + 1
        if name == "ok":
            if etype == 0x01:
                (ok,) = struct.unpack_from("<d", reply, pos)
            elif etype == 0x10:
                (ok,) = struct.unpack_from("<i", reply, pos)
            else:
                raise ValueError(f"'ok' has unexpected BSON type {etype:#x}")
            if ok != 1:
                raise RuntimeError(f"ping answered ok={ok}")
            return "ping ok"
        if etype in fixed:
            pos += fixed[etype]
        elif etype in (0x02, 0x0D, 0x0E):  # string, javascript, symbol: int32 length + bytes
            pos += 4 + struct.unpack_from("<i", reply, pos)[0]
        elif etype in (0x03, 0x04):  # document, array
            pos += struct.unpack_from("<i", reply, pos)[0]
        elif etype == 0x05:  # binary: int32 length + subtype + bytes
            pos += 5 + struct.unpack_from("<i", reply, pos)[0]
        else:
            raise ValueError(f"cannot skip BSON type {etype:#x} in ping reply")
    raise RuntimeError("ping reply has no 'ok' field")


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("kafka", "mongo"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, host, port = argv[1], argv[2], int(argv[3])
    try:
        detail = probe_kafka(host, port) if kind == "kafka" else probe_mongo(host, port)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
        print(f"{kind} {host}:{port} not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(detail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
