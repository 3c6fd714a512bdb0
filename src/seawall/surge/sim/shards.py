"""Running a simulation: one process, or shards on several cores merged into one result."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from seawall.config.schema import Config
from seawall.surge.profiles import gateway_config
from seawall.surge.scenario import Scenario
from seawall.surge.sim.engine import Simulation, _budget
from seawall.surge.sim.state import SimResult
from seawall.surge.stats import Recorder

__all__ = ["run_shard", "simulate"]


def simulate(scenario: Scenario, profile: str = "seawall", *, replicas: int | None = None, seed: int | None = None,
             bucket_s: float | None = None, shards: int = 1, processes: int | None = None) -> SimResult:
    """Run ``scenario`` under the gateway configuration ``profile`` (see :mod:`seawall.surge.profiles`).

    ``shards`` > 1 cuts the run into that many independent simulations, each with its share of the
    replicas, of the arrivals and of every upstream's capacity (:meth:`Scenario.split`), run on up to
    ``processes`` cores (default: all) and merged. Replicas only meet at the upstreams, and a random
    balancer gives each replica an independent share of the traffic, so the one thing a shard
    changes is that an upstream's slots are divided between the shards instead of pooled: a shard may
    get a 429 while another has a free slot. The result depends on the seed and ``shards``, never
    on ``processes``; ``bench/sim.py`` measures what sharding changes."""
    config = gateway_config(scenario, profile)
    n = replicas or scenario.gateway.replicas
    if shards == 1:
        return Simulation(scenario, config, profile=profile, replicas=n, seed=seed, bucket_s=bucket_s).run()
    if not 1 <= shards <= n:
        raise ValueError(f"shards must be between 1 and the number of replicas ({n})")
    started = time.perf_counter()
    parts = [n * (i + 1) // shards - n * i // shards for i in range(shards)]
    base_seed = scenario.seed if seed is None else seed
    if bucket_s is None:
        bucket_s = Recorder([], scenario.duration_s).bucket_s
    jobs = [(piece, config, profile, part, base_seed * 1_000_003 + 7_919 * (i + 1), bucket_s)
            for i, (piece, part) in enumerate(zip(scenario.split(parts), parts, strict=True))]
    workers = max(1, min(shards, processes or os.cpu_count() or 1))
    if workers == 1:
        results = [run_shard(job) for job in jobs]
    else:
        with ThreadPoolExecutor(workers) as pool:  # each thread waits on one child process
            results = list(pool.map(_run_shard_in_child, jobs))
    return _merged(scenario, profile, base_seed, parts, results, time.perf_counter() - started)


ShardJob = tuple[Scenario, Config, str, int, int, float]


def run_shard(job: ShardJob) -> SimResult:
    scenario, config, profile, replicas, seed, bucket_s = job
    return Simulation(scenario, config, profile=profile, replicas=replicas, seed=seed, bucket_s=bucket_s).run()


def _run_shard_in_child(job: ShardJob) -> SimResult:
    """:func:`run_shard` in a fresh interpreter (``seawall.surge._shard``), over pipes."""
    child = subprocess.run([sys.executable, "-m", "seawall.surge._shard"], check=False, capture_output=True,
                           input=pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
    if child.returncode != 0:
        tail = child.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"a simulation shard failed (exit {child.returncode}): {tail[0]}")
    result: SimResult = pickle.loads(child.stdout)
    return result


def _merged(scenario: Scenario, profile: str, seed: int, parts: list[int], results: list[SimResult],
            wall_s: float) -> SimResult:
    """One result from the shards of a run (see :func:`simulate`)."""
    total = sum(parts)

    def gauge(name: str, values: list[float | None]) -> float | None:
        # Per replica (mean, fraction): weighted by the shard's replicas; extremes: the extreme;
        # everything else is a total over the replicas or over an upstream's shares.
        present = [(v, w) for v, w in zip(values, parts, strict=True) if v is not None]
        if name.endswith(".mean") or name.startswith("breaker_open_fraction."):
            return sum(v * w for v, w in present) / sum(w for _, w in present)
        if name.endswith(".min"):
            return min(v for v, _ in present)
        if name.endswith(".max"):
            return max(v for v, _ in present)
        return sum(v for v, _ in present)

    recorder = results[0].recorder
    recorder.merge([r.recorder for r in results[1:]], gauge)
    upstream: dict[str, dict[str, Any]] = {}
    for r in results:
        for name, figures in r.upstream.items():
            into = upstream.setdefault(name, {})
            for key, value in figures.items():
                into[key] = into.get(key, 0) + value  # peak_in_flight: the sum of the shards' peaks
    budget = _budget(*(sum(r.budget[key] for r in results) for key in ("requests", "retries", "denied")))
    return SimResult(scenario=scenario, profile=profile, replicas=total, seed=seed, recorder=recorder, wall_s=wall_s,
                     events=sum(r.events for r in results), requests=sum(r.requests for r in results),
                     user_requests=sum(r.user_requests for r in results), upstream=upstream, budget=budget,
                     shards=len(parts))

