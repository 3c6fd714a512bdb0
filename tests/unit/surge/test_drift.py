"""A tripwire: the simulator re-expresses a few async functions of the gateway (see
``seawall/surge/replica.py`` and ``sim.py``) and builds its objects like ``config/stack.py``. When
one of those changes, this test fails until someone has carried the change over to the simulator
(and the faithfulness test in tests/e2e/test_surge_faithful.py still passes), then updates the
fingerprint here."""

import hashlib
import inspect

from seawall.config.stack import Runtime
from seawall.policies.admission import AdmissionPolicy
from seawall.policies.auth import AuthPolicy
from seawall.policies.deployment import DeploymentHandle
from seawall.policies.route import Router

MIRRORED = {
    # function the simulator mirrors -> (where, fingerprint of its source)
    "AdmissionPolicy.__call__": (AdmissionPolicy.__call__, "surge/sim.py _process/_router_failed"),
    "AdmissionPolicy._sample": (AdmissionPolicy._sample, "surge/sim.py _sample"),
    "Router.__call__": (Router.__call__, "surge/sim.py _route/_router_loop"),
    "DeploymentHandle.attempt": (DeploymentHandle.attempt, "surge/sim.py _attempt/_upstream_done"),
    "AuthPolicy.authenticate": (AuthPolicy.authenticate, "surge/sim.py _flood"),
    "Runtime._admission": (Runtime._admission, "surge/replica.py build_replica"),
    "Runtime._groups": (Runtime._groups, "surge/replica.py build_replica"),
}

FINGERPRINTS = {
    "AdmissionPolicy.__call__": "8d3cb622265001a8",
    "AdmissionPolicy._sample": "287a77e44e6de8f0",
    "Router.__call__": "780c4624e6d0ffa8",
    "DeploymentHandle.attempt": "b6b2e236d15ffbe9",
    "AuthPolicy.authenticate": "57b5b11cdfbc5012",
    "Runtime._admission": "d8729456f5df0253",
    "Runtime._groups": "0d25a3f6799ad1ed",
}


def fingerprint(fn: object) -> str:
    lines = [line.strip() for line in inspect.getsource(fn).splitlines()]  # type: ignore[arg-type]
    code = "\n".join(line for line in lines if line and not line.startswith("#"))
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def test_the_functions_the_simulator_mirrors_have_not_changed():
    changed = {name: (where, fingerprint(fn)) for name, (fn, where) in MIRRORED.items()
               if fingerprint(fn) != FINGERPRINTS[name]}
    assert not changed, (
        "the gateway changed where the simulator mirrors it; carry the change over, then update "
        "FINGERPRINTS: " + ", ".join(f"{name} -> {where} (now {fp})" for name, (where, fp) in changed.items()))
