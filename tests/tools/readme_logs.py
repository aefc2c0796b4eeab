#!/usr/bin/env python3
"""Check that the log lines a lesson README quotes are what the programs print.

A README walkthrough quotes log lines in fenced code blocks, written as

    [..] SLOW  step 9: rdma_accept; private data: addr=0x55d4e2352d00 rkey=0x000002d5 length=4096

that is, the program's line with its "[time #seq function]" prefix shortened to "[..]".
Every such line must match some line of the given logs, where:
  - "..." matches anything (for elided text);
  - runs of spaces match runs of spaces;
  - an annotation after "  <- " is the README's own comment and is ignored;
  - without --exact, any hexadecimal number (0x...) matches any hexadecimal number:
    addresses, rkeys, QPNs and PSNs change every run, so a fresh run's logs can only
    confirm the words. With --exact, against the committed logs of the lesson's capture
    (captures/LESSON/*.log), every number must be the one the README quotes: the values
    a README shows are the values of the recorded run its walkthrough narrates.

usage: readme_logs.py [--exact] README LOG [LOG ...]    exit 0 if every quoted line is found
"""
import re
import sys

PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\.\d{3} #\d+ [^\]]*\] ")


def quoted_lines(readme):
    """The `[..] ...` lines inside fenced code blocks, with their line numbers."""
    inside = False
    for n, line in enumerate(open(readme, encoding="utf-8"), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = not inside
        elif inside and stripped.startswith("[..] "):
            yield n, stripped[5:].split("  <- ")[0].rstrip()


def pattern(text, exact=False):
    parts = []
    for piece in text.split("..."):
        p = re.escape(piece)
        if not exact:
            p = re.sub(r"0x[0-9a-f]+", "0x[0-9a-f]+", p)
        p = re.sub(r"(\\ )+", r"\\s+", p)
        parts.append(p)
    return re.compile(".*".join(parts))


def main():
    args = sys.argv[1:]
    exact = bool(args) and args[0] == "--exact"
    if exact:
        args = args[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    readme, logs = args[0], args[1:]
    which = "committed" if exact else "fresh"
    lines = []
    for log in logs:
        lines += [PREFIX.sub("", l.rstrip("\n")) for l in open(log, encoding="utf-8", errors="replace")]
    missing = 0
    total = 0
    for n, text in quoted_lines(readme):
        total += 1
        rx = pattern(text, exact)
        if not any(rx.search(l) for l in lines):
            missing += 1
            print(f"readme: {readme}:{n}: no line of the {which} logs matches: {text}")
    if total == 0:
        print(f"readme: {readme} quotes no log lines ([..] lines in code blocks)")
        return 1
    if missing:
        print(f"readme: {missing} of {total} quoted log lines in {readme} match no line of the {which} logs")
        return 1
    print(f"readme: all {total} log lines quoted in {readme} match the {which} logs"
          + (" exactly" if exact else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
