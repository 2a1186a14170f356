"""One GPU budget across all workers: three qclusters against one model server.

The loopback server (`tests/fake_llm.py`) runs at most C sequences at once, like
vLLM with `--max-num-seqs C`, each for L seconds, and counts every request it has
received and not yet answered (running or queued): what a budget must bound. The
pipeline grades N answers with the default budget sized from it (LLM_MAX_CONCURRENCY
= 1.5 × C: the batch and half a batch queued), first through one qcluster,
then through three (as if on three hosts, 3 × Q_WORKERS processes) sharing the
budget through the database (or Redis with REDIS_URL). Printed for each: answers/s
and the server's maximum in flight next to the budget. The last line is
machine-readable:

    budget=<b> max_in_flight=<n> single_answers_per_s=<x> multi_answers_per_s=<y>
    multi_vs_single=<r>

(one line).
Targets: max_in_flight ≤ budget in both runs; multi_vs_single ≥ 0.9.
Database: as in bench/grading_throughput.py.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.grading_throughput import prepare, run_pipeline  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1500, help="answers to grade per run")
    parser.add_argument("-c", type=int, default=64, help="the server's --max-num-seqs")
    parser.add_argument("-l", type=float, default=0.5, help="seconds each request holds a slot")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of each cluster")
    parser.add_argument("--clusters", type=int, default=3, help="clusters in the second run")
    parser.add_argument(
        "--budget", type=int, default=0, help="LLM_MAX_CONCURRENCY (default: 1.5 × C, as set)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    tmp, db_url, env, fake = prepare(capacity=args.c, latency=args.l)
    # LLM_MAX_CONCURRENCY as the settings size it from the server's max-num-seqs.
    budget = args.budget or args.c * 3 // 2
    env = {**env, "LLM_MAX_NUM_SEQS": str(args.c)}
    store = "Redis" if env.get("REDIS_URL") else "the database"
    print(f"database: {db_url.split('@')[-1]}; the budget is leased from {store}")
    print(f"server: max-num-seqs C={args.c}, L={args.l}s per request; N={args.n} answers a run")

    rates: dict[int, float] = {}
    peaks: dict[int, int] = {}
    for clusters in (1, args.clusters):
        fake.max_open_requests = 0
        seconds, _ = run_pipeline(
            env=env,
            n=args.n,
            tag=f"multi{clusters}",
            workers=args.workers,
            concurrency=budget,
            log=tmp / f"qcluster-x{clusters}.log",
            clusters=clusters,
        )
        rates[clusters] = args.n / seconds
        peaks[clusters] = fake.max_open_requests
        print(
            f"{clusters} cluster(s) × {args.workers} workers: {seconds:.2f}s, "
            f"{rates[clusters]:.1f} answers/s; server max in flight {peaks[clusters]} "
            f"(budget {budget})"
        )
    fake.stop()
    peak = max(peaks.values())
    ratio = rates[args.clusters] / rates[1]
    if peak > budget:
        print(f"OVER BUDGET: {peak} requests in flight against a budget of {budget}")
    print(
        f"budget={budget} max_in_flight={peak} single_answers_per_s={rates[1]:.1f} "
        f"multi_answers_per_s={rates[args.clusters]:.1f} multi_vs_single={ratio:.3f}"
    )


if __name__ == "__main__":
    main()
