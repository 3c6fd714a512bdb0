"""Several gateway processes on one Redis and one PostgreSQL behave as one gateway: a global
requests/min and tokens/min quota held within 5% under concurrent load across replicas (one of
them running ``--workers 2``), through every quota path (leases far from the limit, one request at a
time on Redis near it, refusals of a known exhausted window in-process), key revocation on every
replica within 2 s, one ledger."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.harness import Proc
from tests.e2e.scale.cluster import (
    accepted,
    chat_body,
    cli,
    create_key,
    gateway_config,
    hammer,
    quota_counts,
    readiness,
    start_replica,
    statuses,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e

RPM = 600
TPM = 30_000
PROCESSES = 3  # replica a, and replica b's two workers


@pytest.fixture(scope="module")
def fleet(scale_tmp: Path, upstream: Proc, redis_url: str, database_url: str, run_id: str
          ) -> Iterator[tuple[Path, list[Proc]]]:
    # The URLs come from environment variables the config names (as a password would), read by every
    # gateway process and every CLI call below.
    os.environ.update({"SEAWALL_FLEET_REDIS_URL": redis_url, "SEAWALL_FLEET_DATABASE_URL": database_url})
    config = gateway_config(
        scale_tmp, upstream.url, redis_prefix=f"{run_id}:fleet", schema=f"{run_id}_fleet",
        redis_url_env="SEAWALL_FLEET_REDIS_URL", store={"database_url_env": "SEAWALL_FLEET_DATABASE_URL"},
        # A loose Redis timeout: this module measures the shared quota, not the fallback (a starved CI
        # machine must not push decisions to local counters; test_faults.py covers those).
        quotas={"tenants": {"rpm-t": {"key": {"requests_per_min": RPM}},
                            "tpm-t": {"tenant": {"tokens_per_min": TPM}}}, "redis_timeout_s": 0.5},
    )
    path = write_config(scale_tmp, config, "fleet")
    replicas = [start_replica(scale_tmp, path, name="a"), start_replica(scale_tmp, path, workers=2, name="b")]
    yield path, replicas
    for proc in replicas:
        proc.stop()
    for name in ("SEAWALL_FLEET_REDIS_URL", "SEAWALL_FLEET_DATABASE_URL"):
        os.environ.pop(name, None)


def _paths(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


def _every_path_taken(paths: dict[str, int], admitted: int) -> None:
    # The quota was held through all three: leases while far from the limit, requests decided on
    # Redis one at a time near it, refusals in-process once the window was known to be exhausted;
    # none decided by the fail-static fallback (that would not be the shared quota).
    assert paths["lease_decisions"] > 0 and paths["remote_decisions"] > 0 and paths["cached_refusals"] > 0, paths
    assert paths["fallback_decisions"] == 0, paths
    assert paths["lease_decisions"] + paths["remote_decisions"] >= admitted, paths


def _all_accept(urls: list[str], key: str, want: bool, times: int = 6) -> bool:
    # several at once per replica, so that every worker process of a --workers replica is likely asked
    with ThreadPoolExecutor(8) as pool:
        return all(answer is want for answer in pool.map(lambda url: accepted(url, key), urls * times))


def _until_every_worker_has(urls: list[str], key: str) -> None:
    wait_until(lambda: _all_accept(urls, key, True), 5)
    # One more snapshot refresh (1 s): a worker that the burst did not reach has reloaded too.
    time.sleep(1.2)


async def test_global_requests_per_minute_held_across_replicas(fleet, scale_tmp):
    path, replicas = fleet
    key = create_key(scale_tmp, path, "rpm-t")["key"]
    urls = [p.url for p in replicas]
    _until_every_worker_has(urls, key)
    before = quota_counts(urls, PROCESSES)
    results = await hammer(urls, key, chat_body(), duration_s=3.0, concurrency=16)
    paths = _paths(before, quota_counts(urls, PROCESSES))
    counts = statuses(results)
    assert set(counts) <= {200, 429}, counts  # no 5xx, nothing else
    admitted = counts.get(200, 0)
    elapsed = max(r.done_s for r in results) - min(r.sent_s for r in results)
    expected = RPM + RPM / 60 * elapsed  # a minute's burst plus the refill over the run
    print(f"requests/min: admitted {admitted}, expected {expected:.1f}, statuses {counts}, paths {paths}")
    assert abs(admitted - expected) <= 0.05 * expected, (admitted, expected, counts)
    _every_path_taken(paths, admitted)
    # both replicas admitted some: the quota is one global bucket, not one per replica
    ok = [r for r in results if r.status == 200]
    assert ok[0].headers["x-ratelimit-limit-requests"] == str(RPM)
    refused = next(r for r in results if r.status == 429)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0" and "retry-after" in refused.headers


async def test_global_tokens_per_minute_held_with_reconciliation(fleet, scale_tmp):
    path, replicas = fleet
    key = create_key(scale_tmp, path, "tpm-t")["key"]
    urls = [p.url for p in replicas]
    _until_every_worker_has(urls, key)
    # Estimated ~ bytes/4 + 64 = ~270 tokens per request, actual ~ bytes/4 + 16: only reconciliation
    # with the actual usage lets the replicas use the whole budget.
    body = chat_body(content_chars=800, max_tokens=64)
    before = quota_counts(urls, PROCESSES)
    results = await hammer(urls, key, body, duration_s=3.0, concurrency=8)
    paths = _paths(before, quota_counts(urls, PROCESSES))
    counts = statuses(results)
    assert set(counts) <= {200, 429}, counts
    used = sum(r.tokens for r in results if r.status == 200)
    elapsed = max(r.done_s for r in results) - min(r.sent_s for r in results)
    expected = TPM + TPM / 60 * elapsed
    print(f"tokens/min: used {used}, expected {expected:.1f}, statuses {counts}, paths {paths}")
    assert abs(used - expected) <= 0.05 * expected, (used, expected, counts)
    _every_path_taken(paths, counts[200])
    estimate = len(body) // 4 + 64
    assert counts[200] > expected / estimate * 1.1  # more requests fit than the estimates alone allow


def test_revoked_key_stops_working_on_every_replica_within_2s(fleet, scale_tmp):
    path, replicas = fleet
    urls = [p.url for p in replicas]
    created = create_key(scale_tmp, path, "rev-t")
    wait_until(lambda: _all_accept(urls, created["key"], True), 2)  # creation reaches all within 2 s
    cli(scale_tmp, path, "keys", "revoke", created["key_id"])
    took = wait_until(lambda: _all_accept(urls, created["key"], False), 2)
    print(f"revocation reached every replica in {took * 1000:.0f} ms")
    assert took < 2.0
    state = readiness(urls[0])
    assert state["dependencies"]["quota_store"]["mode"] == "redis"
    assert state["dependencies"]["quota_store"]["fallback_decisions"] == 0
    assert state["dependencies"]["quota_store"]["replicas"] >= 3  # a, and b's two workers


def test_keys_list_and_usage_read_postgres(fleet, scale_tmp):
    path, _ = fleet
    listed = json.loads(cli(scale_tmp, path, "keys", "list", "--json").stdout)
    assert {k["tenant"] for k in listed} >= {"rpm-t", "tpm-t", "rev-t"}
    wait_until(lambda: any(r["tenant"] == "rpm-t" for r in
                           json.loads(cli(scale_tmp, path, "usage", "--by", "tenant", "--json").stdout)), 3, 0.2)
    rows = json.loads(cli(scale_tmp, path, "usage", "--by", "tenant", "--json").stdout)
    by_tenant = {r["tenant"]: r for r in rows}
    assert by_tenant["rpm-t"]["requests"] > RPM and by_tenant["rpm-t"]["errors"] > 0  # the 429s are recorded
