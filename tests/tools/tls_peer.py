#!/usr/bin/env python3
"""A misbehaving client for lesson 05's TLS server (the smoke test's bad-input cases).

usage: tls_peer.py MODE HOST PORT [--ca CA.pem] [--wait SECONDS]

  garbage-tcp     connect over plain TCP and send an HTTP request (not TLS at all)
  silent-tcp      connect over plain TCP and send nothing
  silent-tls      complete the TLS handshake (verifying the server), then send nothing
  truncated-tls   complete the handshake, send 6 bytes of a 12-byte header, then close
  garbage-tls     complete the handshake, then send 64 bytes that are no exchange message

Each mode then waits (at most --wait seconds) for the server to hang up and prints
"peer: MODE: server closed the connection after N.N s" (or that it did not).
The certificate is always verified: this tool never turns verification off.
"""
import argparse
import socket
import ssl
import sys
import time


def wait_for_close(sock, wait_s, mode, started):
    sock.settimeout(wait_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                break
    except (ConnectionResetError, ssl.SSLError, OSError):
        pass
    except socket.timeout:
        print(f"peer: {mode}: the server did not hang up within {wait_s} s")
        return 1
    print(f"peer: {mode}: server closed the connection after {time.monotonic() - started:.1f} s")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["garbage-tcp", "silent-tcp", "silent-tls", "truncated-tls", "garbage-tls"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--ca", help="CA certificate for the TLS modes")
    ap.add_argument("--wait", type=float, default=30)
    a = ap.parse_args()
    raw = socket.create_connection((a.host, a.port), timeout=10)
    started = time.monotonic()
    if a.mode == "garbage-tcp":
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return wait_for_close(raw, a.wait, a.mode, started)
    if a.mode == "silent-tcp":
        return wait_for_close(raw, a.wait, a.mode, started)
    ctx = ssl.create_default_context(cafile=a.ca)  # verifies the chain and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tls = ctx.wrap_socket(raw, server_hostname=a.host)
    started = time.monotonic()
    print(f"peer: {a.mode}: TLS handshake done ({tls.version()})")
    if a.mode == "truncated-tls":
        tls.sendall(b"RDMT\x01\x04")  # half a header, then goodbye
        tls.close()
        print(f"peer: {a.mode}: sent 6 bytes and closed")
        return 0
    if a.mode == "garbage-tls":
        tls.sendall(b"\xde\xad\xbe\xef" * 16)
    return wait_for_close(tls, a.wait, a.mode, started)


if __name__ == "__main__":
    sys.exit(main())
