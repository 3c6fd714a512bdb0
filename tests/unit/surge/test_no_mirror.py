"""The simulator drives the gateway's decisions; it never takes one of its own (issue 11 item 6).

Each decision lives in one place the gateway and the simulator both call: the admission gate's
events (``offer``/``expire``/``release``), the request's retry plan (``algorithms/plan.py``:
``next``/``on_outcome``/``on_refused``/``requeue``), a deployment's attempt events
(``DeploymentHandle.begin``/``on_head``/``end``/``refusal``/``first_token_timeout_s``), the upstream
edge's error for an answer (``status_error``/``timed_out``) classified by ``outcome_of``, the
admission policy's ``on_round_failed`` and ``latency_sample``, auth's ``charge_failure``, and the
server edge's ``advertised_retry_after_s``. This test fails when code under ``surge/`` reaches past
those into the primitives the decisions are made of, which is how a mirror of a policy starts.
"""

import ast
from pathlib import Path

import seawall.surge

# attributes and names whose use means deciding for the gateway instead of asking it
PRIMITIVES = {
    # breaker, retry budget, backoff, response classifier
    "allow", "on_result", "try_retry", "full_jitter", "decorrelated_jitter", "classify",
    # deployment bookkeeping behind DeploymentHandle.begin/on_head/end
    "cooldown_until_s", "inflight_units", "ewma", "headroom", "MIN_COOLDOWN_S", "MAX_COOLDOWN_S",
    # the limit and the partitioned limiter behind the gate's events
    "on_sample", "on_drop", "try_acquire", "on_upstream_queue",
    # auth's failure throttle behind charge_failure
    "would_wait", "take",
    # the pacer behind begin/on_head/end
    "pacer", "on_send", "ready_at", "paced_for_s",
    # the admission policy's constants behind its functions
    "SAMPLE_MAX_LOOP_LAG_S", "MAX_RETRY_AFTER_S", "max_requeues",
}
WRITES_ONLY = {"inflight_units", "headroom"}  # reading these for a gauge is fine


def offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in PRIMITIVES:
            if node.attr in WRITES_ONLY and not isinstance(node.ctx, ast.Store):
                continue
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in PRIMITIVES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.alias) and node.name in PRIMITIVES:
            found.append(f"import {node.name}")
    return found


def test_no_file_under_surge_takes_a_policy_decision_of_its_own():
    root = Path(seawall.surge.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert any(f.name == "gateway.py" for f in files)
    found = {str(f.relative_to(root)): o for f in files if (o := offences(f.read_text()))}
    assert found == {}, f"the simulator decides for the gateway (call the shared decision instead): {found}"


def test_the_check_catches_the_mirrors_it_replaced():
    # what sim.py did before the decisions moved into shared state machines
    mirror = (
        "from seawall.algorithms.backoff import full_jitter\n"
        "def attempt(dep, now, req):\n"
        "    permit = dep.breaker.allow(now)\n"
        "    dep.inflight_units += req.units\n"
        "    if not router.budget.try_retry(now, req.retries):\n"
        "        return\n"
        "    dep.cooldown_until_s = now + 1.0\n"
    )
    assert len(offences(mirror)) == 5
    assert offences("def gauge(dep):\n    return dep.inflight_units\n") == []
