#!/usr/bin/env python3
"""Prints the Markdown table of a fuzzing campaign, for docs/reliability.md,
from the fuzz-campaigns.tsv that `make fuzz` appends to:

    python3 tests/fuzz/campaign-table.py _fuzz/fuzz-campaigns.tsv [SINCE]

One row per target: its executions summed over the runs (since the UTC
time SINCE, e.g. 2026-12-06T19:39), the last run's executions per second,
edges, features and corpus, and how many runs stopped on a failure."""
import csv
import sys


def main():
    path = sys.argv[1]
    since = sys.argv[2] if len(sys.argv) > 2 else ""
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if r["date"] < since:
                continue
            t = rows.setdefault(r["target"], {"execs": 0, "runs": 0, "failed": 0})
            t["execs"] += int(r["execs"] or 0)
            t["runs"] += 1
            t["failed"] += r["result"].startswith("FAILED")
            for k in ("exec_per_s", "cov", "ft", "corpus"):
                t[k] = r[k]
    print("| target | executions | runs | exec/s (last run) | edges | features | corpus | runs stopped by a failure |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in sorted(rows):
        t = rows[name]
        print("| `%s` | %s | %d | %s | %s | %s | %s | %d |" % (name, format(t["execs"], ","), t["runs"], t["exec_per_s"],
                                                           t["cov"], t["ft"], t["corpus"], t["failed"]))
    total = sum(t["execs"] for t in rows.values())
    print()
    print("%s executions over %d targets." % (format(total, ","), len(rows)))


if __name__ == "__main__":
    main()
