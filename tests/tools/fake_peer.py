#!/usr/bin/env python3
"""A misbehaving peer for the lessons' out-of-band exchange (common/exchange.hpp).

Used by the smoke scripts to show that a lesson refuses bad input with a clear error and
releases what it allocated. It speaks TCP only; it never touches RDMA.

  fake_peer.py MODE HOST PORT [--timeout S]

MODE is one of
  garbage      send bytes that are not an exchange message (an HTTP request)
  truncated    send a header and part of a HELLO body, then close
  version      send a HELLO whose header says version 9
  oversized    send a header announcing a 2 GiB HELLO body
  silent-hello send a valid HELLO with a made-up QPN, read the reply, then never send
               any RDMA traffic (the server must time out waiting for message 1)
  test         lesson 06: send a valid QP_INFO announcing --announce SIZE,WINDOW, read the
               server's QP_INFO, then send a TEST (--test OP,PATTERN,SIZE,WINDOW) and
               print what the server answers (READY, or the ERROR text) until it closes
"""
import argparse
import socket
import struct
import sys
import time

MAGIC = b"RDMT"


def header(version, mtype, length):
    return MAGIC + struct.pack("!BBHI", version, mtype, 0, length)


def hello_body(gid_ip="127.0.0.1", qpn=0x00ABCD, psn=0x123456, mtu=3, size=64, count=1):
    # A RoCE v2 GID for an IPv4 address is the IPv4-mapped IPv6 address ::ffff:a.b.c.d.
    # It must be an address that answers ARP: the server's device resolves it to a MAC
    # address when its QP moves to RTR.
    gid = bytes(10) + b"\xff\xff" + socket.inet_aton(gid_ip)
    return struct.pack("!IIHBB", qpn, psn, 0, mtu, 0) + gid + struct.pack("!II", size, count)


def qp_info_body(gid_ip, size, window):
    # HELLO's 36 bytes (lesson 06: message size and window), then no buffer: addr, rkey,
    # length all 0.
    return hello_body(gid_ip, size=size, count=window) + struct.pack("!QII", 0, 0, 0)


def test_body(op, pattern, size, window, iters=100, number=1):
    return struct.pack("!BBBBIIII", op, pattern, 0, 0, size, iters, window, number)


def receive_messages(s, timeout):
    """Every exchange message the peer sends until it closes: [(type, body)]."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    msgs = []
    while len(data) >= 12:
        _magic, _ver, mtype, _res, length = struct.unpack("!4sBBHI", data[:12])
        msgs.append((mtype, data[12:12 + length]))
        data = data[12 + length:]
    return msgs


def receive_exactly(s, n, timeout):
    s.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connect(host, port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((host, port), timeout=1)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)  # the server may still be starting; bounded by the deadline


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["garbage", "truncated", "version", "oversized", "silent-hello", "test"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--gid-ip", default="127.0.0.1", help="IPv4 address to put in the HELLO's GID")
    ap.add_argument("--announce", default="64,1", help="test: SIZE,WINDOW of the QP_INFO")
    ap.add_argument("--test", default="1,2,64,1", help="test: OP,PATTERN,SIZE,WINDOW of the TEST")
    args = ap.parse_args()
    s = connect(args.host, args.port, args.timeout)
    if args.mode == "garbage":
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    elif args.mode == "truncated":
        s.sendall(header(1, 1, 36) + hello_body(args.gid_ip)[:8])
    elif args.mode == "version":
        s.sendall(header(9, 1, 36) + hello_body(args.gid_ip))
    elif args.mode == "oversized":
        s.sendall(header(1, 1, 0x7FFFFFFF))
    elif args.mode == "silent-hello":
        s.sendall(header(1, 1, 36) + hello_body(args.gid_ip))
        s.settimeout(args.timeout)
        reply = b""
        while True:  # read until the server closes: its HELLO, READY, then EOF on its error
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        print(f"fake_peer: server sent {len(reply)} bytes, then closed")
    elif args.mode == "test":
        size, window = (int(v) for v in args.announce.split(","))
        op, pattern, test_size, test_window = (int(v) for v in args.test.split(","))
        s.sendall(header(1, 4, 52) + qp_info_body(args.gid_ip, size, window))
        reply = receive_exactly(s, 12 + 52, args.timeout)
        print(f"fake_peer: server sent {len(reply)} bytes of its QP_INFO")
        s.sendall(header(1, 6, 20) + test_body(op, pattern, test_size, test_window))
        names = {2: "READY", 3: "ERROR", 5: "DONE"}
        for mtype, body in receive_messages(s, args.timeout):
            text = body.decode("ascii", "replace") if mtype == 3 else f"{len(body)} bytes"
            print(f"fake_peer: server sent {names.get(mtype, f'type {mtype}')}: {text}")
        print("fake_peer: server closed the connection")
    # Half-close: the server reads what we sent, then end-of-stream (a peer that hung up),
    # while we still wait (bounded) for the server to close its side.
    try:
        s.shutdown(socket.SHUT_WR)
        s.settimeout(args.timeout)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
