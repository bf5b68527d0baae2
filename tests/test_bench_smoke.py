"""The load benchmark runs end to end on a tiny corpus against the receiver on SQLite."""

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_bench_smoke_receiver_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADS_RECEIVER_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # the corpus cache, not the user's
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "smtp_load.py"),
            "--messages",
            "200",
            "--mailboxes",
            "2",
            "--sessions",
            "5",
            "--targets",
            "c",
            "--no-half-rate",
            "--no-mixed",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    row = result["rows"]["c"]
    assert row["acked"] == 200, row
    assert row["check"]["deliveries"] == 200 and row["check"]["lost"] == 0
    assert row["check"]["threads"] == row["check"]["threads_expected"] > 1
    assert result["lost"] == 0 and result["failed"] == []
