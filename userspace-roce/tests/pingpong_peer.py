#!/usr/bin/python3
"""A fake ibv_rc_pingpong server for one exchange: it answers the client's address
message with an address that carries no GID (all zeros), as a server on an InfiniBand
port with LIDs would, and closes. An ibv_rc_pingpong client run without -g then puts
the QP into RTR without a GRH, which RoCE must refuse ("Failed to modify QP to RTR").

  pingpong_peer.py PORT [--timeout SECONDS]

Prints "listening on PORT" once it accepts connections, then what it received and sent.
Exit status: 0 after one exchange, 1 on a timeout or a short message.
The message format is rc_pingpong.c's: "%04x:%06x:%06x:%s" (LID, QPN, PSN, the GID as
32 hex digits) with its terminating NUL, 52 bytes; the client then sends "done\\0".
"""
import argparse
import socket
import sys

MSG_LEN = len("0000:000000:000000:00000000000000000000000000000000") + 1


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    print(f"listening on {args.port}", flush=True)
    try:
        conn, peer = srv.accept()
        conn.settimeout(args.timeout)
        msg = recv_exact(conn, MSG_LEN)
        print(f"received from {peer[0]}:{peer[1]}: {msg.rstrip(bytes(1)).decode(errors='replace')!r}", flush=True)
        if len(msg) != MSG_LEN:
            print(f"short address message: {len(msg)} of {MSG_LEN} bytes", flush=True)
            return 1
        reply = "0000:000011:123456:" + "0" * 32
        conn.sendall(reply.encode() + bytes(1))
        print(f"sent: {reply!r} (no GID)", flush=True)
        done = recv_exact(conn, len("done") + 1)
        print(f"then received {done!r}", flush=True)
        conn.close()
    except socket.timeout:
        print(f"no client within {args.timeout} s", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
