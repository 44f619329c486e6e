#!/usr/bin/env bash
# A short fault soak (tests/soak/soak.c) as part of make test / asan / tsan:
# the replicator and its informers against the in-process fake API server
# under load and random faults; exits non-zero on any cache or replica
# mismatch.  `make soak DURATION=S` runs a long one.  SOAK_SEED=N repeats a run.
set -euo pipefail
B=${KC_BUILD:-build}
d=${SOAK_DURATION:-15}
[ -n "${KC_SANITIZER:-}" ] && d=${SOAK_DURATION:-10}
exec "$B/tests/soak" --duration "$d" --quiet ${SOAK_SEED:+--seed "$SOAK_SEED"}
