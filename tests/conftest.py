"""Shared fixtures. Real processes on loopback live in tests/e2e/conftest.py."""

import os

from hypothesis import settings

# Property tests run the same examples every time in `make test` (derandomize: a failure is never a
# roll of the dice on a shared machine) and without deadlines (a loaded machine is not a finding).
# `HYPOTHESIS_PROFILE=explore pytest ...` draws fresh examples, many more, to go looking.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.register_profile("explore", deadline=None, max_examples=5_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
