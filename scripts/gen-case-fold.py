#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes src/core/case_fold_table.inc: Unicode simple case folding.

Reads CaseFolding.txt (Debian package unicode-data installs it as
/usr/share/unicode/CaseFolding.txt) and keeps the simple folding: the
mappings of status C (common) and S (simple), not F (full) or T (Turkic).

The table is a sorted list of disjoint runs {first, last, stride, delta}:
a code point c with first <= c <= last and (c - first) % stride == 0 folds
to c + delta; every other code point folds to itself. Runs are found
greedily over the sorted mappings, with stride 1 (A-Z) or 2 (the alternating
upper/lower pairs of Latin Extended, Greek, Cyrillic, ...).

Usage: scripts/gen-case-fold.py [CaseFolding.txt [OUTPUT]]
"""

import re
import sys

DEFAULT_INPUT = "/usr/share/unicode/CaseFolding.txt"
DEFAULT_OUTPUT = "src/core/case_fold_table.inc"


def read_mappings(path):
    version = None
    mappings = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if version is None:
                m = re.match(r"#\s*CaseFolding-(\d+\.\d+\.\d+)\.txt", line)
                if m:
                    version = m.group(1)
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            fields = [x.strip() for x in line.split(";")]
            code, status, target = fields[0], fields[1], fields[2]
            if status not in ("C", "S"):
                continue
            targets = target.split()
            if len(targets) != 1:
                sys.exit(f"{path}: status {status} maps {code} to more than one code point")
            c, t = int(code, 16), int(targets[0], 16)
            if c in mappings:
                sys.exit(f"{path}: {code} has two simple mappings")
            mappings[c] = t
    if version is None:
        sys.exit(f"{path}: no '# CaseFolding-X.Y.Z.txt' header line")
    return version, mappings


def make_runs(mappings):
    runs = []  # [first, last, stride, delta]
    for c in sorted(mappings):
        delta = mappings[c] - c
        if runs:
            first, last, stride, d = runs[-1]
            step = c - last
            if d == delta and (step == stride or (first == last and step in (1, 2))):
                runs[-1] = [first, c, step, d]
                continue
        runs.append([c, c, 1, delta])
    return runs


def check(runs, mappings):
    expanded = {}
    for first, last, stride, delta in runs:
        for c in range(first, last + 1, stride):
            expanded[c] = c + delta
    if expanded != mappings:
        sys.exit("internal error: the runs do not reproduce the mappings")
    for a, b in zip(runs, runs[1:]):
        if a[1] >= b[0]:
            sys.exit("internal error: runs overlap")


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_INPUT
    out = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUTPUT
    version, mappings = read_mappings(src)
    runs = make_runs(mappings)
    check(runs, mappings)
    major_minor = ".".join(version.split(".")[:2])
    lines = [
        "// SPDX-License-Identifier: MIT",
        f"// Generated from Unicode {version} CaseFolding.txt by scripts/gen-case-fold.py; do not edit.",
        "// Simple case folding (statuses C and S): a code point c in a run",
        "// {first, last, stride, delta} with (c - first) % stride == 0 folds to",
        "// c + delta; all others fold to themselves. Runs are sorted and disjoint.",
        f"// {len(mappings)} mappings in {len(runs)} runs.",
        "",
        f'inline constexpr char case_fold_unicode_version_text[] = "{major_minor}";',
        "",
        "inline constexpr fold_run case_fold_runs[] = {",
    ]
    for first, last, stride, delta in runs:
        lines.append(f"    {{0x{first:04X}, 0x{last:04X}, {stride}, {delta}}},")
    lines.append("};")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
