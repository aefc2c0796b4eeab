#!/usr/bin/env python3
"""lab-attach.py - join this terminal to a lab guest's shell (used by lab.sh shell/attach).

  lab-attach.py --role ROLE --dir DIR [--wait SEC] [--detach-key]

DIR is the guest's output directory (lab.sh's OUT/ROLE). qemu connects the guest's
second serial port, where guest-init.sh runs the shell, to the Unix socket
DIR/shell.sock; the guest writes DIR/shell-ready once the port is open (input sent
earlier could be lost). This waits for both (and for DIR itself: lab.sh may not have made it yet), at most
--wait seconds, then copies bytes
both ways until the guest closes the port (it powered off) or, with --detach-key, until
Ctrl-] is typed (the guest's shell goes on; attach again later).

On a terminal, the terminal is put in raw mode: every key, Ctrl-C included, goes to the
guest, whose own terminal settings echo and edit. Otherwise stdin is sent as it comes
(commands for a test), and at its end this keeps printing what the guest sends until
the guest powers off. One terminal at a time: DIR/shell.lock says who is attached.
"""
import argparse
import errno
import fcntl
import os
import select
import signal
import socket
import sys
import termios
import time
import tty

DETACH = b"\x1d"  # Ctrl-]


def note(msg):
    sys.stderr.write(f"lab: {msg}\r\n" if sys.stdin.isatty() else f"lab: {msg}\n")
    sys.stderr.flush()


def connect(args):
    """The connected socket, once the guest's shell port is open; None on failure."""
    sock_path = os.path.join(args.dir, "shell.sock")
    ready = os.path.join(args.dir, "shell-ready")
    error = os.path.join(args.dir, "init-error")
    deadline = time.monotonic() + args.wait
    told = False
    # Files written by qemu and by the guest (over 9p) on this host: nothing announces
    # them, so look every 0.1 s, at most --wait seconds.
    while True:
        if os.path.exists(error):
            with open(error) as f:
                note(f"the {args.role} guest's setup failed: {f.read().strip()} "
                     f"(console: {args.dir}/console.log)")
            return None
        if os.path.exists(ready) and os.path.exists(sock_path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(sock_path)
                return s
            except OSError as e:
                s.close()
                if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
        if time.monotonic() >= deadline:
            note(f"no shell in the {args.role} guest after {args.wait} s (waited for "
                 f"{ready} and {sock_path}): is 'scripts/lab/lab.sh shell' running with "
                 f"this --out? (console: {args.dir}/console.log)")
            return None
        if not told:
            note(f"waiting for the {args.role} guest's shell (up to {args.wait} s)")
            told = True
        time.sleep(0.1)


def relay(sock, detach_key):
    """Copies stdin to the guest and the guest to stdout. Returns why it stopped."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    inputs = [sock, stdin]
    while True:
        readable, _, _ = select.select(inputs, [], [])
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                return "guest"
            os.write(stdout, data)
        if stdin in readable:
            data = os.read(stdin, 65536)
            if not data:                 # end of stdin: keep showing the guest's output
                inputs.remove(stdin)
                continue
            if detach_key and DETACH in data:
                data = data[:data.index(DETACH)]
                if data:
                    sock.sendall(data)
                return "detached"
            sock.sendall(data)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--role", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--wait", type=int, default=90)
    p.add_argument("--detach-key", action="store_true")
    args = p.parse_args()
    # lab.sh stops this with SIGTERM when the lab ends: leave through `finally`, so that
    # the terminal gets its settings back.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(0))

    sock = connect(args)
    if sock is None:
        return 1
    # qemu serves one connection at a time and leaves a second one unanswered: say so.
    lock = open(os.path.join(args.dir, "shell.lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        note(f"another terminal is attached to the {args.role} guest's shell "
             f"({lock.read().strip() or 'pid unknown'}); one at a time")
        return 1
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    on_tty = sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin.fileno()) if on_tty else None
    how = "Ctrl-] detaches, exit powers the guest off" if args.detach_key else \
        "exit (or Ctrl-D, or poweroff) powers the guest off"
    note(f"attached to the {args.role} guest's shell ({how}); press Enter for a prompt"
         if on_tty else f"attached to the {args.role} guest's shell; sending stdin")
    try:
        if on_tty:
            tty.setraw(sys.stdin.fileno())
        why = relay(sock, args.detach_key and on_tty)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
        sock.close()
    if why == "detached":
        note(f"detached; the {args.role} guest's shell goes on "
             f"(scripts/lab/lab.sh attach {args.role} joins it again)")
    else:
        note(f"the {args.role} guest closed its shell port: the guest is off")
    return 0


if __name__ == "__main__":
    sys.exit(main())
