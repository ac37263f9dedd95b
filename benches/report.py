#!/usr/bin/env python3
"""Prints amber/raw ratios from the last `cargo bench --bench engine` run.

Reads criterion's estimates (median, in ns) under target/criterion and
writes a Markdown table to stdout.
"""
import json
import os
import sys

ROOT = os.environ.get("CRITERION_DIR", "target/criterion")

# (group, amber bench, baseline bench, target, direction)
# direction "le": amber time / baseline time must be <= target
# direction "speedup": baseline time / amber time must be >= target
CHECKS = [
    ("point_read", "amber", "raw_sqlite", 1.1, "le"),
    ("point_write", "amber", "raw_sqlite", 1.1, "le"),
    ("point_write", "amber", "raw_sqlite_same_work", 1.1, "le"),
    ("point_write", "amber_no_bucket", "raw_sqlite_same_work", 1.1, "le"),
    ("kv_put_100_per_turn", "amber", "raw_sqlite_autocommit", 20.0, "speedup"),
    ("kv_put_100_per_turn", "amber", "raw_sqlite_one_txn", 0.8, "speedup"),
    ("cached_get", "amber", "raw_sqlite", 5.0, "speedup"),
    ("durable_confirm", "amber_put_end_turn_wait", "bare_write_fdatasync", 1.2, "le"),
    ("durable_confirm", "amber_put_end_turn_wait", "raw_sqlite_wal_synchronous_full", 1.2, "le"),
    ("durable_confirm", "amber_no_bucket_put_end_turn_wait", "bare_write_fdatasync", 1.2, "le"),
    ("group_commit", "8_objects", "1_objects", 1.0, "speedup"),
]


def median_ns(group, bench):
    path = os.path.join(ROOT, group, bench, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def main():
    print("| benchmark | amber | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    missing = 0
    for group, a, b, target, direction in CHECKS:
        try:
            ta, tb = median_ns(group, a), median_ns(group, b)
        except FileNotFoundError:
            missing += 1
            print(f"| {group}/{a} vs {b} | – | – | – | – | not run |")
            continue
        if direction == "le":
            ratio = ta / tb
            ok = ratio <= target
            desc = f"{ratio:.2f}x the time"
            tdesc = f"≤ {target}x"
        else:
            ratio = tb / ta
            ok = ratio >= target
            desc = f"{ratio:.2f}x faster"
            tdesc = f"≥ {target}x"
        print(f"| {group}: {a} vs {b} | {fmt(ta)} | {fmt(tb)} | {desc} | {tdesc} | {'yes' if ok else 'NO'} |")
    return 1 if missing == len(CHECKS) else 0


if __name__ == "__main__":
    sys.exit(main())
