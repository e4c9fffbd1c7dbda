"""Faults on demand: 429/500/529 answers, slow answers, results cut off midway. Off by default.

Where a key's faults come from, first match wins:
1. an `EmulatedKeyFaults` row for the key (`set_key_faults(key, rate_429=0.5)` in a test);
2. words in the key itself, for callers that can only choose a key: `fault-429`, `fault-500`,
   `fault-529` (every second call fails), `fault-slow` (answers take 0.2 s longer),
   `fault-cut` (results streams break off midway), `fault-short` (results streams end cleanly
   halfway), `fault-redirect` (the results URL redirects elsewhere), `fault-expire` (batches run
   past their expiry), `fault-revoked` (every call answers 401, as for a revoked key);
3. the EMULATOR_FAULT_* settings, for every key.

Failures are deterministic (see `failure_for`): counted per key in this process, spread evenly,
and split between the statuses in the proportions of their rates.
"""

import hashlib
import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from django.conf import settings

from emulator.models import EmulatedKeyFaults

KEY_WORD_RATE = 0.5
KEY_WORD_LATENCY = 0.2


@dataclass(frozen=True)
class FaultPlan:
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_529: float = 0.0
    retry_after_seconds: int = 1
    latency_seconds: float = 0.0
    cut_results: bool = False
    short_results: bool = False
    redirect_results: bool = False
    slow_batches: bool = False
    lose_create_answers: int = 0
    lookalikes_with_lost_answer: int = 0


def workspace_of(api_key: str) -> str:
    """The workspace a key stands for: a hash, so no key is ever stored."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def set_key_faults(api_key: str, **faults: float | int | bool) -> EmulatedKeyFaults:
    """Turn faults on for one key (fields of `EmulatedKeyFaults`); `clear_key_faults` undoes it."""
    row, _ = EmulatedKeyFaults.objects.update_or_create(
        workspace=workspace_of(api_key), defaults=faults
    )
    _reset_counter(workspace_of(api_key))
    return row


def clear_key_faults(api_key: str) -> None:
    EmulatedKeyFaults.objects.filter(workspace=workspace_of(api_key)).delete()
    _reset_counter(workspace_of(api_key))


def is_revoked(api_key: str) -> bool:
    """A key the API would refuse (revoked, or never issued): every call answers 401."""
    return "fault-revoked" in api_key


def plan_for(api_key: str) -> FaultPlan:
    row = EmulatedKeyFaults.objects.filter(workspace=workspace_of(api_key)).first()
    if row is not None:
        return FaultPlan(
            rate_429=row.rate_429,
            rate_500=row.rate_500,
            rate_529=row.rate_529,
            retry_after_seconds=row.retry_after_seconds,
            latency_seconds=row.latency_seconds,
            cut_results=row.cut_results,
            short_results=row.short_results,
            redirect_results=row.redirect_results,
            slow_batches=row.slow_batches,
            lose_create_answers=row.lose_create_answers,
            lookalikes_with_lost_answer=row.lookalikes_with_lost_answer,
        )
    words = {
        word
        for word in ("429", "500", "529", "slow", "cut", "short", "redirect", "expire")
        if f"fault-{word}" in api_key
    }
    if words:
        return FaultPlan(
            rate_429=KEY_WORD_RATE if "429" in words else 0.0,
            rate_500=KEY_WORD_RATE if "500" in words else 0.0,
            rate_529=KEY_WORD_RATE if "529" in words else 0.0,
            retry_after_seconds=settings.EMULATOR_FAULT_RETRY_AFTER_SECONDS,
            latency_seconds=KEY_WORD_LATENCY if "slow" in words else 0.0,
            cut_results="cut" in words,
            short_results="short" in words,
            redirect_results="redirect" in words,
            slow_batches="expire" in words,
        )
    return FaultPlan(
        rate_429=settings.EMULATOR_FAULT_RATE_429,
        rate_500=settings.EMULATOR_FAULT_RATE_500,
        rate_529=settings.EMULATOR_FAULT_RATE_529,
        retry_after_seconds=settings.EMULATOR_FAULT_RETRY_AFTER_SECONDS,
        latency_seconds=settings.EMULATOR_FAULT_LATENCY_SECONDS,
        cut_results=settings.EMULATOR_FAULT_CUT_RESULTS,
    )


_lock = threading.Lock()


@dataclass
class _Tally:
    calls: int = 0
    # status: how many calls it failed so far
    failures: dict[int, int] = field(default_factory=lambda: {429: 0, 500: 0, 529: 0})


_tallies: dict[str, _Tally] = defaultdict(_Tally)


def reset_counters() -> None:
    """Start every key's call count again (the suite does this before each test)."""
    with _lock:
        _tallies.clear()


def _reset_counter(workspace: str) -> None:
    with _lock:
        _tallies.pop(workspace, None)


def failure_for(api_key: str, plan: FaultPlan) -> int | None:
    """The status this call must fail with (429, 500 or 529), or None to answer normally.

    Call k fails when floor(k * r) passes a whole number, r being the three rates together, so
    failures are spread evenly (0.5 fails every second call). Each failure goes to the status
    furthest behind its own rate's share, so rates of 0.1, 0.1 and 0.1 give as many 429s as 500s
    as 529s, in turn.
    """
    rates = {429: plan.rate_429, 500: plan.rate_500, 529: plan.rate_529}
    total = sum(rate for rate in rates.values() if rate > 0)
    if total <= 0:
        return None
    with _lock:
        tally = _tallies[workspace_of(api_key)]
        tally.calls += 1
        call = tally.calls
        if math.floor(call * min(total, 1.0)) <= math.floor((call - 1) * min(total, 1.0)):
            return None
        failed = sum(tally.failures.values()) + 1
        status = max(
            (status for status, rate in rates.items() if rate > 0),
            key=lambda status: failed * rates[status] / total - tally.failures[status],
        )
        tally.failures[status] += 1
        return status


def take_lost_create_answer(workspace: str) -> bool:
    """True (once per planned loss) when this create's answer is to be lost after it succeeded."""
    from django.db.models import F

    return (
        EmulatedKeyFaults.objects.filter(workspace=workspace, lose_create_answers__gt=0).update(
            lose_create_answers=F("lose_create_answers") - 1
        )
        == 1
    )
