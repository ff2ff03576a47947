#!/usr/bin/env python3
"""Summarizes a results.tsv of interleaved wrk rounds (columns: round, route, rps, p50, p99, proxy_cpu_s, non2xx
and, when recorded, requests): per route the median req/s, its ratio to the `plain` route of the same round
(paired median, min..max), median latencies and the non-2xx count. With the request counts it also gives the
proxy's CPU time per request and the paired ratio of the baseline's to the route's: the throughput the route keeps
when the proxy's core is what limits (wrk and the backend share the other core, so at some rounds they limit, and
the req/s ratio then also counts work the route adds to the backend). A second argument names another baseline
route than `plain`. Used by auth.sh, resilience.sh, rate_limit.sh and observability.sh."""
import statistics
import sys


def ms(v):
    v = v.strip()
    for suffix, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * f
    return float("nan")


rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])][1:]
by = {}
for row in rows:
    rnd, route, rps, p50, p99, cpu, non2xx = row[:7]
    requests = float(row[7]) if len(row) > 7 and row[7] else 0.0
    cpu_us = float(cpu) * 1e6 / requests if requests else float("nan")
    by.setdefault(route, {})[rnd] = (float(rps), ms(p50), ms(p99), cpu_us, int(non2xx or 0))
base = sys.argv[2] if len(sys.argv) > 2 else "plain"
plain = by[base]
with_cpu = all(v[3] == v[3] for per in by.values() for v in per.values())
width = max(len(r) for r in by) + 2
header = f"{'route':<{width}}{'req/s (median)':>16}{'vs ' + base + ' (paired)':>20}{'range':>18}"
if with_cpu:
    header += f"{'CPU us/req':>12}{'CPU-bound vs ' + base:>22}{'range':>18}"
print(header + f"{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
for route, per in by.items():
    rps = statistics.median(v[0] for v in per.values())
    ratios = sorted(per[r][0] / plain[r][0] for r in per if r in plain)
    line = f"{route:<{width}}{rps:>16.0f}{statistics.median(ratios):>20.3f}{f'{ratios[0]:.3f}..{ratios[-1]:.3f}':>18}"
    if with_cpu:
        cpu = statistics.median(v[3] for v in per.values())
        kept = sorted(plain[r][3] / per[r][3] for r in per if r in plain)
        line += f"{cpu:>12.2f}{statistics.median(kept):>22.3f}{f'{kept[0]:.3f}..{kept[-1]:.3f}':>18}"
    print(line + f"{statistics.median(v[1] for v in per.values()):>9.3f}"
          f"{statistics.median(v[2] for v in per.values()):>9.3f}{sum(v[4] for v in per.values()):>9}")
