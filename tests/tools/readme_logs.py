#!/usr/bin/env python3
"""Check that the log lines a lesson README quotes are what the programs print today.

A README walkthrough quotes log lines in fenced code blocks, written as

    [..] SLOW  step 9: rdma_accept; private data: addr=0x55d4.. rkey=0x000002d5 length=4096

that is, the program's line with its "[time #seq function]" prefix shortened to "[..]".
Every such line must match some line of the given logs (a fresh run's), where:
  - any hexadecimal number (0x...) matches any hexadecimal number (addresses, rkeys,
    QPNs and PSNs change every run);
  - "..." matches anything (for elided text);
  - runs of spaces match runs of spaces;
  - an annotation after "  <- " is the README's own comment and is ignored.

usage: readme_logs.py README LOG [LOG ...]     exit 0 if every quoted line is found
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


def pattern(text):
    parts = []
    for piece in text.split("..."):
        p = re.escape(piece)
        p = re.sub(r"0x[0-9a-f]+", "0x[0-9a-f]+", p)
        p = re.sub(r"(\\ )+", r"\\s+", p)
        parts.append(p)
    return re.compile(".*".join(parts))


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    readme, logs = sys.argv[1], sys.argv[2:]
    lines = []
    for log in logs:
        lines += [PREFIX.sub("", l.rstrip("\n")) for l in open(log, encoding="utf-8", errors="replace")]
    missing = 0
    total = 0
    for n, text in quoted_lines(readme):
        total += 1
        rx = pattern(text)
        if not any(rx.search(l) for l in lines):
            missing += 1
            print(f"readme: {readme}:{n}: no line of the fresh logs matches: {text}")
    if total == 0:
        print(f"readme: {readme} quotes no log lines ([..] lines in code blocks)")
        return 1
    if missing:
        print(f"readme: {missing} of {total} quoted log lines in {readme} no longer match a fresh run")
        return 1
    print(f"readme: all {total} log lines quoted in {readme} match a fresh run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
