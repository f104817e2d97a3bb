#!/usr/bin/env python3
"""Regenerates docs/BENCHMARKS.md: runs the criterion benches and the oha scenarios in one
sitting on this machine and writes every figure with its command, the machine and the date,
as ratios to the baseline measured in the same run.

    python3 loadtest/benchmarks.py [--duration 10s] [--skip-criterion] [--skip-load]

Every server it starts listens on 127.0.0.1 and is stopped by PID; every load run is bounded
by --duration. A full run takes about 10 minutes on two cores.
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenarios  # noqa: E402

ROOT = scenarios.ROOT
OUTPUT = os.path.join(ROOT, "docs", "BENCHMARKS.md")
BENCHES = ["parse", "validate", "queue", "stats", "pipeline"]


def run_criterion():
    for bench in BENCHES:
        subprocess.run(["cargo", "bench", "--quiet", "--bench", bench, "--", "--noplot"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)


def criterion_results(since=None):
    """Maps each benchmark id to (median seconds per iteration, elements per iteration).

    With `since` (a time.time() value), results written before it are left out: target/criterion
    keeps every benchmark that ever ran, including ones since renamed or removed."""
    results = {}
    for path in glob.glob(os.path.join(ROOT, "target", "criterion", "**", "new", "benchmark.json"), recursive=True):
        if since is not None and os.path.getmtime(path) < since:
            continue
        with open(path) as handle:
            meta = json.load(handle)
        with open(os.path.join(os.path.dirname(path), "estimates.json")) as handle:
            median_ns = json.load(handle)["median"]["point_estimate"]
        elements = (meta.get("throughput") or {}).get("Elements", 1)
        results[meta["full_id"]] = (median_ns / 1e9, elements)
    return results


def rate(results, key):
    seconds, elements = results[key]
    return elements / seconds


def criterion_section(results):
    lines = [
        "## In-process benches (criterion)",
        "",
        "Command: `cargo bench --bench NAME -- --noplot` for NAME in " + ", ".join(BENCHES) +
        "; medians, in events per second.",
        "",
        "| benchmark | events/s |",
        "| --- | ---: |",
    ]
    for key in sorted(results):
        lines.append(f"| `{key}` | {rate(results, key):,.0f} |")
    lines += ["", "Ratios from the same run:", ""]

    def ratio(title, numerator, denominator, minimum=None):
        if numerator in results and denominator in results:
            value = rate(results, numerator) / rate(results, denominator)
            target = "" if minimum is None else f" (target >= {minimum}: {scenarios.verdict(value >= minimum)})"
            lines.append(f"- {title}: **{value:.2f}** (`{numerator}` / `{denominator}`){target}")

    for shape in ["single", "array_1000", "ndjson_1000"]:
        ratio(f"parse_body vs simd-json tape only, {shape}", f"parse/parse_body/{shape}",
              f"parse/simd_json_floor/{shape}")
        ratio(f"parse_body vs simd-json building a value, {shape}", f"parse/parse_body/{shape}",
              f"parse/simd_json_value/{shape}")
    for mix in ["uniform", "zipf"]:
        ratio(f"whole pipeline (2 workers) vs simd-json tape only on NDJSON, {mix}",
              f"pipeline/workers/2/{mix}", "parse/simd_json_floor/ndjson_1000", 0.50)
        ratio(f"2 workers vs 1 worker, {mix}", f"pipeline/workers/2/{mix}", f"pipeline/workers/1/{mix}", 1.8)
    for workers in [1, 2]:
        ratio(f"Zipf vs uniform sources, pipeline with {workers} worker(s)", f"pipeline/workers/{workers}/zipf",
              f"pipeline/workers/{workers}/uniform", 0.85)
    return lines


def stats_memory_section():
    example = os.path.join(ROOT, "examples", "stats_memory.rs")
    if not os.path.exists(example):
        return []
    result = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "stats_memory"], cwd=ROOT,
                            check=True, capture_output=True, text=True)
    lines = ["## Statistics memory", "", "Command: `cargo run --release --example stats_memory`", "", "```",
             result.stdout.strip(), "```", ""]
    per_source = re.search(r"heap_bytes_per_source=([0-9.]+)", result.stdout)
    if per_source:
        value = float(per_source.group(1))
        lines += [f"Heap per source with up to 4 event types: **{value:.1f} bytes** "
                  f"(target <= 160: {scenarios.verdict(value <= 160)}).", ""]
    return lines


def commit():
    """Returns the checked-out commit, with `-dirty` when the tree has uncommitted changes."""
    result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() or "unknown (not a git checkout)"


def target_summary(lines):
    """Counts the `met` and `MISSED` marks under each heading, so the page opens with them."""
    counts, heading = {}, None
    for line in lines:
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        met, missed = len(re.findall(r": met\b", line)), line.count(": MISSED")
        if met or missed:
            section = counts.setdefault(heading, [0, 0])
            section[0] += met
            section[1] += missed
    if not counts:
        return []
    rows = [f"| {heading} | {met} | {missed} |" for heading, (met, missed) in counts.items()]
    return ["## Targets", "", "| section | met | MISSED |", "| --- | ---: | ---: |", *rows, "",
            "Each mark sits next to its figure below; search the page for MISSED.", ""]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--skip-criterion", action="store_true",
                        help="reuse every result in target/criterion, including benchmarks since renamed or removed")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds for the single, stats and logging scenarios")
    args = parser.parse_args()

    load = os.getloadavg()
    started = time.strftime("%H:%M UTC", time.gmtime())
    header = [
        "# Benchmarks",
        "",
        "Regenerate this page with `python3 loadtest/benchmarks.py`. Every figure below comes from one",
        "run on one machine, and every comparison is a ratio to a baseline measured in that same run.",
        "The load generator (oha) runs on the same two cores as the server, so absolute figures are",
        "lower than on a dedicated machine and the ratios are what to compare.",
        "",
        f"Machine: {scenarios.machine()}, started {started}; load average at start {load[0]:.2f}.  ",
        f"Commit: `{commit()}`, release profile of `Cargo.toml`.",
        "",
    ]
    lines = []
    criterion_since = None
    if not args.skip_criterion:
        criterion_since = time.time()
        run_criterion()
    lines += criterion_section(criterion_results(criterion_since))
    lines.append("")
    lines += stats_memory_section()

    if not args.skip_load:
        scenarios.build()
        lines += ["## HTTP load (oha)", ""]
        names = ["single", "ndjson", "stats", "logging"]
        if shutil.which("valgrind"):
            names.append("instructions")
        else:
            lines += ["valgrind is not installed, so the instruction count section is left out.", ""]
        for name in names:
            title, table, summary, command = scenarios.run_scenario(name, args.duration, args.rounds)
            lines += [f"### {title}", "", f"Command: `{command}`", "", *table, "", summary, ""]

    with open(OUTPUT, "w") as report:
        report.write("\n".join(header + target_summary(lines) + lines).rstrip() + "\n")
    print(f"wrote {OUTPUT} ({time.strftime('%H:%M:%S')})")


if __name__ == "__main__":
    sys.exit(main())
