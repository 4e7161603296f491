#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (checked in; rerun only to change the seeds).

    python3 tests/fuzz/make_corpus.py

Seeds are small, valid-or-nearly-valid inputs that reach deep into each parser; the fuzzer
mutates from there. Deterministic: fixed names, times and owners.
"""
import gzip
import io
import os
import struct
import tarfile

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- filters (containerd's filter language; cases from its filters tests) ----
FILTERS = [
    "name==foo",
    "name!=foo,labels.bar",
    "labels.foo==bar,name~=^busybox",
    'topic=="/tasks/exit"',
    "topic~=/tasks/.*,namespace==default",
    'labels."gc.ref.content"==sha256:0',
    "labels.a.b.c==d",
    "name~=/a,b/",
    'name=="quoted \\"value\\" with \\\\ escapes"',
    "name==foo\nlabels.x!=y\n",
    "target.mediaType~=application/vnd\\.oci\\..*",
    "name~=[",
    "a.b.c.d.e.f==g,h,i!=j",
    "",
]
for i, f in enumerate(FILTERS):
    write("filters", "seed-%02d.txt" % i, f)


# ---- ttrpc frames (ttrpc 1.1: 10-byte header, hand-encoded protobuf messages) ----
def varint(v):
    out = b""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(n, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(n << 3 | 2) + varint(len(data)) + data


def field_varint(n, v):
    return varint(n << 3) + varint(v)


def request(service, method, payload=b"", timeout=0, md=()):
    m = field_bytes(1, service) + field_bytes(2, method)
    if payload:
        m += field_bytes(3, payload)
    if timeout:
        m += field_varint(4, timeout)
    for k, v in md:
        m += field_bytes(5, field_bytes(1, k) + field_bytes(2, v))
    return m


def response(code=0, message="", details=(), payload=b""):
    m = b""
    if code or message or details:
        st = (field_varint(1, code) if code else b"") + (field_bytes(2, message) if message else b"")
        for d in details:
            st += field_bytes(3, d)
        m += field_bytes(1, st)
    if payload:
        m += field_bytes(2, payload)
    return m


def frame(stream, typ, payload, flags=0, length=None):
    n = len(payload) if length is None else length
    return struct.pack(">IIBB", n, stream, typ, flags) + payload


any_detail = field_bytes(1, "type.googleapis.com/google.rpc.DebugInfo") + field_bytes(2, b"\x0a\x01x")
seeds = {
    "request": frame(1, 1, request("containerd.task.v2.Task", "State", field_bytes(1, "c1"),
                                   5_000_000_000, [("containerd-namespace", "default")])),
    "request-md": frame(3, 1, request("s", "m", b"", -1, [("a", "1"), ("A", "2"), ("a", "3")])),
    "response-ok": frame(1, 2, response(payload=field_bytes(1, "c1") + field_varint(2, 42))),
    "response-err": frame(5, 2, response(5, "container \"c1\": not found", [any_detail])),
    "response-neg": frame(7, 2, response(-1 & 0xFFFFFFFFFFFFFFFF, "negative code")),
    "two-frames": frame(1, 1, request("a", "b")) + frame(3, 1, request("c", "d", b"xyz")),
    "oversized": frame(9, 1, b"", length=5 << 20) + b"\0" * 64,
    "data-frame": frame(11, 3, b"stream data", flags=1),
    "unknown-fields": frame(13, 1, request("s", "m") + field_varint(99, 7) + b"\x2d\x01\x02\x03\x04"),
    "empty": b"",
}
for name, data in seeds.items():
    write("ttrpc", name + ".bin", data)


# ---- references (today: digests, identifiers, labels) ----
H = "0123456789abcdef" * 4
REFS = [
    "docker.io/library/busybox:latest@sha256:" + H,
    "sha256:" + H,
    "sha384:" + H + H[:32],
    "sha512:" + H + H,
    "localhost:5000/a/b:tag",
    "default",
    "moby",
    "k8s.io",
    "a-b_c.d",
    "gc.ref.content=sha256:" + H,
    "containerd.io/gc.root=2024-01-01T00:00:00Z",
    "name@sha256:" + H.upper(),
    "@",
    "",
]
for i, r in enumerate(REFS):
    write("reference", "seed-%02d.txt" % i, r)


# ---- layers (tar, gzip; the breakout cases of tests/diff/apply_test.cc) ----
def tar(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.type = e.get("type", tarfile.REGTYPE)
            ti.mode = e.get("mode", 0o644)
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            ti.mtime = 1700000000
            ti.linkname = e.get("link", "")
            if "pax" in e:
                ti.pax_headers = e["pax"]
            data = e.get("data", b"")
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = 1, 3
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    # Drop tarfile's padding to a 10 KiB record: keep the blocks and the two-block end marker,
    # so mutations land in headers and data rather than in padding.
    body = buf.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    return body + b"\0" * 1024


D = tarfile.DIRTYPE
layers = {
    "simple": [{"name": "etc", "type": D, "mode": 0o755},
               {"name": "etc/hostname", "data": b"berth\n"},
               {"name": "bin", "type": D, "mode": 0o755},
               {"name": "bin/sh", "data": b"#!fake\n", "mode": 0o755, "uid": 1000, "gid": 1000}],
    "symlink-escape": [{"name": "evil", "type": tarfile.SYMTYPE, "link": "../../../outside"},
                       {"name": "evil/sentinel", "data": b"pwned\n"},
                       {"name": "abs", "type": tarfile.SYMTYPE, "link": "/etc"},
                       {"name": "abs/passwd", "data": b"root::0:0::/:/bin/sh\n"}],
    "dotdot": [{"name": "../../x", "data": b"escape\n"},
               {"name": "./a/../../../outside/sentinel", "data": b"escape\n"},
               {"name": "/abs/file", "data": b"abs\n"}],
    "hardlink": [{"name": "f", "data": b"data\n"},
                 {"name": "h", "type": tarfile.LNKTYPE, "link": "f"},
                 {"name": "out", "type": tarfile.LNKTYPE, "link": "../../outside/sentinel"},
                 {"name": "h", "data": b"replaced\n", "mode": 0o4755}],
    "whiteouts": [{"name": "d", "type": D},
                  {"name": "d/.wh..wh..opq"},
                  {"name": ".wh.gone"},
                  {"name": "d/.wh.x"},
                  {"name": ".wh...", "data": b""},
                  {"name": "d/keep", "data": b"k\n"}],
    "devices-fifo": [{"name": "null", "type": tarfile.CHRTYPE, "mode": 0o666},
                     {"name": "blk", "type": tarfile.BLKTYPE},
                     {"name": "fifo", "type": tarfile.FIFOTYPE}],
    "pax-long": [{"name": "l/" + "n" * 200, "data": b"long\n",
                  "pax": {"SCHILY.xattr.user.k": "v", "mtime": "1700000000.5"}},
                 {"name": "big-ids", "data": b"", "uid": 3_000_000, "gid": 3_000_000}],
    "dir-replaced": [{"name": "d", "type": D}, {"name": "d/f", "data": b"1\n"},
                     {"name": "d", "type": tarfile.SYMTYPE, "link": "/"},
                     {"name": "d/f", "data": b"2\n"}],
}
for name, entries in layers.items():
    fmt = tarfile.GNU_FORMAT if name == "simple" else tarfile.PAX_FORMAT
    write("apply", name + ".tar", tar(entries, fmt))
write("apply", "simple.tar.gz", gzip.compress(tar(layers["simple"]), mtime=0))
write("apply", "symlink-escape.tar.gz", gzip.compress(tar(layers["symlink-escape"]), mtime=0))
write("apply", "empty.tar", b"\0" * 1024)
