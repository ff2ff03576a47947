#!/usr/bin/env python3
"""Summarizes a results.tsv of interleaved wrk rounds (columns: round, route, rps, p50, p99, proxy_cpu_s, non2xx):
per route the median req/s, its ratio to the `plain` route of the same round (paired median, min..max), median
latencies and the non-2xx count. A second argument names another baseline route than `plain`. Used by auth.sh,
resilience.sh and rate_limit.sh."""
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
for rnd, route, rps, p50, p99, cpu, non2xx in rows:
    by.setdefault(route, {})[rnd] = (float(rps), ms(p50), ms(p99), float(cpu), int(non2xx or 0))
base = sys.argv[2] if len(sys.argv) > 2 else "plain"
plain = by[base]
width = max(len(r) for r in by) + 2
print(f"{'route':<{width}}{'req/s (median)':>16}{'vs ' + base + ' (paired)':>20}{'range':>18}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
for route, per in by.items():
    rps = statistics.median(v[0] for v in per.values())
    ratios = sorted(per[r][0] / plain[r][0] for r in per if r in plain)
    print(f"{route:<{width}}{rps:>16.0f}{statistics.median(ratios):>20.3f}{f'{ratios[0]:.3f}..{ratios[-1]:.3f}':>18}"
          f"{statistics.median(v[1] for v in per.values()):>9.3f}{statistics.median(v[2] for v in per.values()):>9.3f}"
          f"{sum(v[4] for v in per.values()):>9}")
