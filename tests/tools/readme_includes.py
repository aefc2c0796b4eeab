#!/usr/bin/env python3
"""Check that a README shows committed result files as they are.

A lesson README that quotes a committed table (lesson 06's results/*/steps1-7.txt, its
agreement.txt) must quote it whole and unchanged, so that a re-run that replaces the
files cannot leave the README describing other numbers. Each FILE's text, without its
final newline, must appear verbatim inside one fenced code block of README.

usage: readme_includes.py README FILE [FILE ...]    exit 0 if every file is quoted whole
"""
import sys


def fenced_blocks(readme):
    blocks, current = [], None
    for line in open(readme, encoding="utf-8"):
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    readme, files = argv[1], argv[2:]
    blocks = fenced_blocks(readme)
    missing = [f for f in files if not any(open(f, encoding="utf-8").read().rstrip("\n") in b for b in blocks)]
    for f in missing:
        print(f"readme: {readme} does not quote {f} as it is now: copy the file into its code block again",
              file=sys.stderr)
    if not missing:
        print(f"readme: {readme} quotes all {len(files)} result file(s) unchanged")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
