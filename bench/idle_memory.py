#!/usr/bin/env python3
"""Idle resident memory of ecto-tunnel against `ssh -N -L`, mapping by mapping.

    bench/idle_memory.py [--ecto-bin BIN ...] [--top 15] [--settle 2]

Sets up what bench/run.py sets up (throwaway sshd on loopback, loadgen service, ecto-tunnel
`run` with 3 tunnels, one probe connection through each, `ssh -N -L` with 3 forwards), once per
--ecto-bin (each as its own daemon, so two builds can be compared in the same run), waits
--settle seconds, then prints for every forwarder VmRSS, /proc/PID/smaps_rollup and the Rss of
each mapped file (all its mappings summed; anonymous mappings as [anon]), largest first.
Needs what `make bench-build` builds.
"""

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: the same setup as the benchmark)


def rss_by_file(pid):
    """{file or [anon]: (Rss KiB, Private_Dirty KiB)} summed over the file's mappings."""
    rss, dirty, name = collections.Counter(), collections.Counter(), None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif parts[0] == "Rss:":
                rss[name] += int(parts[1])
            elif parts[0] == "Private_Dirty:":
                dirty[name] += int(parts[1])
    return {n: (rss[n], dirty[n]) for n in rss}


def anonymous_mappings(pid):
    """[(size KiB, Rss KiB, perms)] of every anonymous mapping (heap, stacks, malloc arenas) with Rss."""
    out, current = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and not parts[0].endswith(":"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                named = len(parts) > 5 and not parts[5].startswith("[")
                current = None if named else [(end - start) // 1024, 0, parts[1] + " " + (parts[5] if len(parts) > 5 else "")]
                if current:
                    out.append(current)
            elif parts[0] == "Rss:" and current:
                current[1] = int(parts[1])
    return [tuple(m) for m in out if m[1] > 0]


def rollup(pid):
    keep = ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous")
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].rstrip(":") in keep:
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ecto-bin", action="append", help="ecto-tunnel binary (repeatable)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--anon", action="store_true", help="also list every anonymous mapping with Rss")
    ap.add_argument("--settle", type=float, default=2, help="seconds after the last start")
    ap.add_argument("--loadgen", default=os.path.join(run.ROOT, ".build-bench/c/loadgen"))
    args = ap.parse_args()
    bins = args.ecto_bin or [os.path.join(run.ROOT, ".build-bench/release/ecto-tunnel")]
    for b in bins + [args.loadgen]:
        if not os.access(b, os.X_OK):
            sys.exit("missing %s: run `make bench-build`" % b)

    bench = run.Bench(argparse.Namespace(loadgen=args.loadgen, ecto_bin=bins[0], keep=False))
    try:
        bench.keys()
        bench.start_sshd()
        bench.start_service()
        names = []
        for i, b in enumerate(bins):
            name = "ecto%d" % i if len(bins) > 1 else "ecto"
            bench.start_ecto(name, b)
            names.append((name, b))
        bench.start_ssh()
        time.sleep(args.settle)
        for name, pid in bench.pids.items():
            label = dict(names).get(name, "ssh -N -L (3 forwards)")
            r = rollup(pid)
            print("== %s (%s): VmRSS %d KiB; %s" % (name, label, run.proc_rss_kib(pid),
                                                     ", ".join("%s %d" % kv for kv in r.items())))
            maps = sorted(rss_by_file(pid).items(), key=lambda kv: -kv[1][0])
            for path, (rss, dirty) in maps[:args.top]:
                print("  %7d KiB  (private dirty %5d)  %s" % (rss, dirty, path))
            if args.anon:
                for size, rss, what in anonymous_mappings(pid):
                    print("    anon %7d KiB resident of %8d KiB  %s" % (rss, size, what))
    finally:
        bench.cleanup()
        bench.log.close()


if __name__ == "__main__":
    main()
