#!/usr/bin/env python3
"""Check a fresh run's remedy lines against the ones lesson 07's README quotes.

    check_remedies.py README CASE SIDE LOG

Every "step 7: SIDE: remedy: ..." line LOG holds must be, but for its numbers, one of
the remedy lines the README quotes for CASE and SIDE: in the section "## CASE: ...", or
in any other section whose quotes name the case in a "step 1: case CASE:" line (the
README's walk through the steps quotes bad-rkey). The README's quotes are checked against
the recorded runs (readme_logs_07); this checks them against the code as it is now
(common/completion.cpp, common/device.cpp and the cases' own words), so a remedy changed
in the code and not in the README, or the other way round, fails the smoke test.

Numbers may differ (a limit, a QP number): each run of digits, decimal or 0x-hex, is
compared as "#". Exit 0 when every line matches (or LOG holds none for SIDE), 1 when one
does not, saying which case, which side and both texts; 2 on a usage error.
"""
import re
import sys

QUOTED = re.compile(r"^\s*\[\.\.\] INFO  step 7: (client|server): remedy: (.*)$")
PRINTED = re.compile(r"step 7: (client|server): remedy: (.*)$")
CASE_HEADING = re.compile(r"^## ([a-z0-9-]+): ")
STEP1 = re.compile(r"step 1: case ([a-z0-9-]+): ")
NUMBER = re.compile(r"0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?")


def shape(text):
    """The text with every number replaced by '#'."""
    return NUMBER.sub("#", text.strip())


def readme_remedies(path):
    """{(case, side): [remedy text, ...]} from the README's quoted log lines."""
    sections = []  # (heading case or None, [lines])
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("## "):
                m = CASE_HEADING.match(line)
                sections.append((m.group(1) if m else None, []))
            elif sections:
                sections[-1][1].append(line)
    remedies = {}
    for heading, lines in sections:
        cases = {heading} if heading else set()
        if not heading:
            cases = {m.group(1) for l in lines for m in [STEP1.search(l)] if m}
        for l in lines:
            m = QUOTED.match(l)
            if not m:
                continue
            for case in cases:
                remedies.setdefault((case, m.group(1)), []).append(m.group(2))
    return remedies


def main(argv):
    if len(argv) != 5 or argv[3] not in ("client", "server"):
        print("usage: check_remedies.py README CASE client|server LOG", file=sys.stderr)
        return 2
    readme, case, side, log = argv[1:]
    quoted = readme_remedies(readme).get((case, side), [])
    printed = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = PRINTED.search(line.rstrip("\n"))
            if m and m.group(1) == side:
                printed.append(m.group(2))
    bad = 0
    for text in printed:
        if any(shape(text) == shape(q) for q in quoted):
            continue
        bad += 1
        print(f"remedy: case {case}, {side}: the run printed a remedy the README does not quote for it")
        print(f"  printed ({log}):")
        print(f"    {text}")
        if quoted:
            print(f"  the README's section {case} quotes for the {side}:")
            for q in quoted:
                print(f"    {q}")
        else:
            print(f"  the README's section {case} quotes no remedy line for the {side}: quote this one "
                  f"(from a recorded run, recorded/*/*.log)")
    if bad:
        return 1
    print(f"remedy: case {case}, {side}: {len(printed)} remedy line(s), each as the README quotes it")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
