#!/usr/bin/env bash
# What the controller costs while idle: RSS (VmRSS, VmHWM) and CPU of a release-built
# `share-hygiene controller` process that has swept 100 policies, against the tests' fake
# Kubernetes API (tests/common_fake_api) and an in-process handle service. The figures and
# what they mean are in docs/benchmarks.md, section "Controller"; the bench itself is
# benches/controller_idle.rs.
#
#   scripts/bench-controller.sh                                   # default scenarios, 30 s idle
#   scripts/bench-controller.sh --idle 60 --scenario 100:1000:20000
#   scripts/bench-controller.sh --scenario 0:1000:20000 --minimal-objects
#   scripts/bench-controller.sh --scenario 100:1000:20000 --env MALLOC_ARENA_MAX=1
#
# Linux only (it reads /proc). Run it on an otherwise idle machine: CPU figures are per cent
# of one core over the idle window and other load skews them.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench controller_idle -- "$@"
