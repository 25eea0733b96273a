"""Hypothesis profiles of the fuzz suite: short by default, long with ``GIT_THETA_FUZZ=long``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: The profile the fuzz tests run under (registered here, applied per test: other suites keep their own settings).
PROFILE = "git-theta-fuzz"

_SHARED = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
if os.environ.get("GIT_THETA_FUZZ") == "long":
    settings.register_profile(PROFILE, max_examples=20_000, **_SHARED)
else:
    settings.register_profile(PROFILE, max_examples=int(os.environ.get("GIT_THETA_FUZZ_EXAMPLES", "400")), **_SHARED)
