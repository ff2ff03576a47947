#!/usr/bin/env python3
"""perf_diff.py - where two processes recorded together by side_by_side.sh (PERF=1) spend their CPU, per request.

    perf_diff.py <perf.data> <A tids> <B tids> <A requests> <B requests> [<symbol> <A binary> <B binary>]

Tids are comma-separated thread ids of each process. Samples are cpu-clock at PERF_FREQ (4999) Hz, so a sample is
1e9 / 4999 ns; dividing by the requests each process served gives ns per request, per symbol, B minus A, largest
first. With a symbol (as perf names it), the same per source line inside it instead: each side's offsets are read
against its own binary, so two builds compare too. A line is named by the innermost frame in this repository's
crates, with the function inlined into it in brackets.
"""
import collections
import os
import re
import subprocess
import sys

FREQ = float(os.environ.get("PERF_FREQ", "4999"))
TOP = int(os.environ.get("TOP", "30"))


def per_symbol(data, tids, reqs):
    report = subprocess.run(
        ["perf", "report", "-i", data, "-n", "--no-children", "--sort", "pid,sym"],
        capture_output=True, text=True, check=True).stdout
    cost = [collections.Counter(), collections.Counter()]
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\d+):\S+\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        samples, tid, sym = int(m.group(1)), m.group(2), m.group(3).strip()
        for side in (0, 1):
            if tid in tids[side]:
                cost[side][sym] += samples * 1e9 / FREQ / reqs[side]
    return cost


def line_names(binary, sym, offsets):
    """The source line (in this repository) of each offset into `sym` in `binary`."""
    nm = subprocess.run(["nm", "-C", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    bases = [int(l.split()[0], 16) for l in nm.splitlines() if l.split(None, 2)[-1] == sym]
    if not bases:
        sys.exit(f"{sym} not in {binary}")
    base = bases[0]
    out = subprocess.run(["addr2line", "-e", binary, "-i", "-C", "-f", "-a"] + [hex(base + o) for o in offsets],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    frames, current = {}, None
    for line in out:
        if line.startswith("0x"):
            current = int(line, 16) - base
            frames[current] = []
        else:
            frames[current].append(line)
    names = {}
    for offset, lines in frames.items():
        pairs = list(zip(lines[0::2], lines[1::2]))
        name = pairs[0][1].rsplit("/", 1)[-1] if pairs else hex(offset)
        for i, (_, where) in enumerate(pairs):
            if "/crates/" in where and "/.cargo/" not in where:
                inner = f" [{pairs[i - 1][0][:40]}]" if i else ""
                name = where.split("/crates/")[-1].split(" ")[0] + inner
                break
        names[offset] = name
    return names


def per_line(data, tids, reqs, sym, binaries):
    script = subprocess.run(["perf", "script", "-i", data, "-F", "tid,ip,sym,symoff", "--symbols=" + sym],
                            capture_output=True, text=True, check=True).stdout
    hits = [collections.Counter(), collections.Counter()]
    for line in script.splitlines():
        fields = line.split()
        if "+0x" not in line or not fields:
            continue
        for side in (0, 1):
            if fields[0] in tids[side]:
                hits[side][int(line.rsplit("+0x", 1)[1], 16)] += 1
    cost = [collections.Counter(), collections.Counter()]
    for side in (0, 1):
        names = line_names(binaries[side], sym, sorted(hits[side]))
        for offset, samples in hits[side].items():
            cost[side][names[offset]] += samples * 1e9 / FREQ / reqs[side]
    return cost


def main():
    data, tids_a, tids_b, reqs_a, reqs_b = sys.argv[1:6]
    tids = [set(tids_a.split(",")), set(tids_b.split(","))]
    reqs = [float(reqs_a), float(reqs_b)]
    if len(sys.argv) > 6:
        sym, bin_a, bin_b = sys.argv[6:9]
        cost = per_line(data, tids, reqs, sym, [bin_a, bin_b])
        print(f"inside {sym}:")
    else:
        cost = per_symbol(data, tids, reqs)
    a, b = cost
    print(f"A {sum(a.values()):.1f} ns/req, B {sum(b.values()):.1f} ns/req (sampled)")
    print(f"{'B-A ns':>8} {'A ns':>8} {'B ns':>8}")
    keys = sorted(set(a) | set(b), key=lambda k: b[k] - a[k], reverse=True)
    for k in keys[:TOP]:
        print(f"{b[k] - a[k]:+8.1f} {a[k]:8.1f} {b[k]:8.1f}  {k[:110]}")
    print("...")
    for k in keys[-max(TOP // 3, 1):]:
        print(f"{b[k] - a[k]:+8.1f} {a[k]:8.1f} {b[k]:8.1f}  {k[:110]}")


if __name__ == "__main__":
    main()
