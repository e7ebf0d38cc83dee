"""Offline classifier: accuracy on the hand-labelled gold set, and its speed.

Reports, for every labelled field of tests/data/gold_posts.jsonl, how many posts the offline
classifier gets right (lists compared as sets, purchase intent as a low/medium/high band), a
confusion summary for product_category and sentiment, the misses of one field on request, and
the classifier's throughput in this one process over the gold set repeated to about 20,000
posts: posts/s, p50/p95 latency of a batch, peak resident memory. No database needed. Usage:
    python bench/quality.py [--posts 20000] [--batch-size 100] [--show-misses FIELD]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from services.classify.offline import OfflineClassifier  # noqa: E402
from services.classify.schema import PostText  # noqa: E402

GOLD = ROOT / "tests" / "data" / "gold_posts.jsonl"
#: Posts written and labelled after the lexicons and rules were tuned on GOLD, never tuned on:
#: the honest estimate of accuracy on posts the classifier has not seen.
HOLDOUT = ROOT / "tests" / "data" / "gold_posts_holdout.jsonl"
SET_FIELDS = ("effects_mentioned", "frustrations")


def intent_band(value: int | None) -> str:
    """The gold set's purchase_intent bands: high >= 60, medium 30-59, low below."""
    value = value or 0
    return "high" if value >= 60 else "medium" if value >= 30 else "low"


def read_gold(path: Path = GOLD) -> list[dict]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def predicted(classification, field: str):
    if field == "purchase_intent_band":
        return intent_band(classification.purchase_intent)
    value = getattr(classification, field)
    return frozenset(value) if field in SET_FIELDS else value


def expected(case: dict, field: str):
    value = case["expected"][field]
    return frozenset(value) if field in SET_FIELDS else value


def score(cases: list[dict], results: list) -> dict[str, tuple[int, int, list]]:
    """{field: (right, labelled, [(text, expected, predicted) of misses])}."""
    fields = list(dict.fromkeys(f for case in cases for f in case["expected"]))
    report = {}
    for field in fields:
        right, total, misses = 0, 0, []
        for case, result in zip(cases, results):
            if field not in case["expected"]:
                continue
            total += 1
            want, got = expected(case, field), predicted(result, field)
            if want == got:
                right += 1
            else:
                misses.append((case["text"], want, got))
        report[field] = (right, total, misses)
    return report


def confusion(cases: list[dict], results: list, field: str) -> list[tuple[str, str, int]]:
    pairs = Counter((expected(c, field), predicted(r, field)) for c, r in zip(cases, results))
    return sorted(((w, g, n) for (w, g), n in pairs.items() if w != g), key=lambda item: -item[2])


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def speed(classifier: OfflineClassifier, texts: list[str], posts: int,
          batch_size: int) -> tuple[float, float, float, float]:
    """(posts/s wall clock, posts per CPU second, p50 ms, p95 ms per batch) over the texts
    repeated to ``posts``. On a shared machine the CPU-time rate is what one free core does."""
    repeated = [PostText(key=str(i), text=texts[i % len(texts)]) for i in range(posts)]
    latencies = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    for i in range(0, len(repeated), batch_size):
        batch_started = time.perf_counter()
        classifier.classify(repeated[i:i + batch_size])
        latencies.append((time.perf_counter() - batch_started) * 1000)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    return posts / elapsed, posts / cpu, statistics.median(latencies), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--show-misses", metavar="FIELD", help="print the gold posts this field gets wrong")
    parser.add_argument("--gold", type=Path, default=GOLD, help="the labelled posts to score (JSON lines)")
    args = parser.parse_args()

    started = time.perf_counter()
    classifier = OfflineClassifier()
    load_ms = (time.perf_counter() - started) * 1000
    cases = read_gold(args.gold)
    outcome = classifier.classify([PostText(key=str(i), text=c["text"]) for i, c in enumerate(cases)])
    report = score(cases, outcome.results)
    holdout = {}
    if args.gold == GOLD and HOLDOUT.exists():
        held = read_gold(HOLDOUT)
        holdout = score(held, classifier.classify([PostText(key=str(i), text=c["text"])
                                                   for i, c in enumerate(held)]).results)

    about = Counter("not cannabis" if not c["expected"]["cannabis_related"] else "cannabis" for c in cases)
    print(f"\noffline classifier quality: {len(cases)} posts of {args.gold.name} ({about['cannabis']} about "
          f"cannabis, {about['not cannabis']} not), {classifier.model_version}")
    if holdout:
        print(f"  {'field':<22} {'gold':>6}  {'right':>8}   holdout (never tuned on)")
    for field, (right, total, _) in report.items():
        goal = "  (goal 0.80)" if field in ("product_category", "sentiment", "strain_mentioned") else ""
        held_out = ""
        if field in holdout:
            h_right, h_total, _ = holdout[field]
            held_out = f"   {h_right / h_total:>6.3f}  {h_right:>3}/{h_total}"
        print(f"  {field:<22} {right / total:>6.3f}  {right:>4}/{total}{held_out}{goal}")
    for field in ("product_category", "sentiment"):
        wrong = confusion(cases, outcome.results, field)
        print(f"\n  {field} confusions (expected -> predicted: count)")
        for want, got, count in wrong[:10] or [("-", "-", 0)]:
            print(f"    {want:>12} -> {got:<12} {count:>3}")
    if args.show_misses:
        print(f"\n  misses of {args.show_misses}:")
        for text, want, got in report[args.show_misses][2]:
            print(f"    expected {want!r}, got {got!r}: {text}")

    rate, cpu_rate, p50, p95 = speed(classifier, [c["text"] for c in cases], args.posts, args.batch_size)
    print(f"\noffline classifier speed: {args.posts:,} posts in batches of {args.batch_size}, one process")
    print(f"  lexicon load + compile  {load_ms:>10,.0f} ms")
    print(f"  throughput              {rate:>10,.0f} posts/s  (goal 2,000)")
    print(f"  per CPU second          {cpu_rate:>10,.0f} posts/s  (about what an idle core does; load "
          f"average now {os.getloadavg()[0]:.1f})")
    print(f"  batch latency p50       {p50:>10,.1f} ms")
    print(f"  batch latency p95       {p95:>10,.1f} ms")
    print(f"  peak RSS                {peak_rss_mb():>10,.1f} MiB")


if __name__ == "__main__":
    main()
