#!/usr/bin/env python3
"""Top functions of a py-spy collapsed-stack file (`py-spy record --format raw`).

    python bench/profile_top.py DIR/c.txt [--top 25]

Prints, per function, the share of samples where it is on the stack (inclusive) and where
it is the innermost frame (self), idle threads left out.
"""

from __future__ import annotations

import argparse
import collections
import re

IDLE = re.compile(
    r"\((threading|selectors|queue|concurrent/futures/thread)\.py\)$|"
    r"^(select|poll|wait|_worker|get|_wait_for_tstate_lock|run_forever|"
    r"_run_once|epoll)\b"
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in open(args.file):
        stack, _, count = line.rstrip().rpartition(" ")
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].split("/")[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")[1:]
        ]
        if not frames or IDLE.search(frames[-1]):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"{total} busy samples")
    print(f"{'inclusive':>9} {'self':>6}  function (file)")
    for f, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:8.1f}% {100 * own[f] / total:5.1f}%  {f}")
    print("\nself time:")
    for f, n in own.most_common(args.top):
        print(f"{100 * n / total:8.1f}%  {f}")


if __name__ == "__main__":
    main()
