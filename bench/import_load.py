"""Bulk import throughput: a generated N-message mbox through `threads-receiver import`.

    python bench/import_load.py [--messages 100000] [--db sqlite|postgresql://...]

Prints the rate of a first import (everything stored) and of a second one (everything a
duplicate: the resume path). Messages are list-like mail of about 1.5 kB in threads of
up to 8, some with an unquoted "From " body line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_mbox(path: Path, n: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    words = (
        "the build fails on rawhide because the spec file needs a newer python macro "
        "and the review request is pending since last week please check"
    ).split()
    with open(path, "wb") as f:
        for i in range(n):
            root = i - i % 8
            refs = (
                f"In-Reply-To: <m{i - 1}@bench.example>\nReferences: <m{root}@bench.example>\n"
                if i != root
                else ""
            )
            body = "\n".join(" ".join(rnd.choices(words, k=12)) for _ in range(18))
            if i % 50 == 0:
                body += "\n\nFrom what I can tell this is unrelated.\n"
            f.write(
                (
                    f"From sender{i % 97}@bench.example Thu Dec 31 22:50:51 2009\n"
                    f"From: Sender {i % 97} <sender{i % 97}@bench.example>\n"
                    f"To: devel@lists.bench.example\n"
                    f"Subject: {'Re: ' if refs else ''}thread {root}\n"
                    f"Date: Fri, 1 Jan 2010 09:{i % 60:02d}:00 +0000\n"
                    f"Message-ID: <m{i}@bench.example>\n{refs}"
                    f"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
                    f"{body}\n\n"
                ).encode()
            )


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args], env=env, capture_output=True, check=True
    )


def _children_cpu() -> float:
    """CPU seconds used by finished child processes: on a shared machine the wall clock
    measures the neighbours too, CPU time per message does not."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--db", default="sqlite", help="sqlite, or a postgresql:// URL of an empty db")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mbox = tmp / "bench.mbox"
        t = time.monotonic()
        make_mbox(mbox, args.messages)
        print(
            f"generated {args.messages} messages, {mbox.stat().st_size / 1e6:.0f} MB "
            f"in {time.monotonic() - t:.1f}s"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADS_RECEIVER_")}
        env.update(PYTHONPATH=str(ROOT), THREADS_RECEIVER_CONFIG=str(tmp / "rx" / "receiver.toml"))
        if args.db != "sqlite":
            env["THREADS_RECEIVER_DB"] = args.db
        cli(env, "init", "--dir", str(tmp / "rx"), "--domain", "push.example.com")
        cli(env, "mailbox", "add", "bench@corp.example")
        for label in ("first import", "second import (all duplicates)"):
            t = time.monotonic()
            cpu = _children_cpu()
            r = cli(env, "import", str(mbox), "--mailbox", "bench@corp.example", "--json")
            wall = time.monotonic() - t
            cpu = _children_cpu() - cpu
            s = json.loads(r.stdout)
            print(
                f"{label}: {s['messages']} messages, {s['stored']} stored, "
                f"{s['duplicate']} duplicates, {s['failed'] + s['tempfailed']} failed; "
                f"{s['rate']:,.0f} msg/s in the pipeline, {s['messages'] / wall:,.0f} msg/s "
                f"wall clock including start-up ({wall:.1f}s); CPU {cpu:.1f}s = "
                f"{1000 * cpu / s['messages']:.2f} ms a message"
            )
        stats = json.loads(cli(env, "stats", "--json").stdout)["totals"]
        print(f"stored: {stats['messages']} messages in {stats['threads']} threads")


if __name__ == "__main__":
    main()
