#!/usr/bin/env python3
"""Runs a command and writes its wall seconds and peak resident memory as JSON, for the bench
and GPU-smoke scripts (no GNU time or bc needed). Usage: measure.py OUT.json CMD [ARGS...];
the command's output passes through; exits with its status."""
import json, resource, subprocess, sys, time

start = time.perf_counter()
status = subprocess.run(sys.argv[2:]).returncode
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": seconds, "peak_rss_mib": peak_kib // 1024}, f)
sys.exit(status)
