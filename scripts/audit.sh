#!/usr/bin/env bash
# Dependency audit: RustSec advisories, licenses, banned crates and sources,
# against deny.toml at the repository root.
#
#   scripts/audit.sh                # all four checks
#   scripts/audit.sh licenses bans  # some of them
#
# Needs cargo-deny (`cargo install cargo-deny --locked`). The advisory
# check clones https://github.com/RustSec/advisory-db; on a machine without
# access to github.com it cannot run: the script says so and fails, rather
# than reporting a clean bill it did not check. ACCEL_AUDIT_OFFLINE=1 skips
# only that check, explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
    echo "audit.sh: cargo-deny is not installed: cargo install cargo-deny --locked" >&2
    exit 2
fi

checks=("$@")
if [[ ${#checks[@]} -eq 0 ]]; then
    checks=(advisories licenses bans sources)
fi
if [[ "${ACCEL_AUDIT_OFFLINE:-0}" == 1 ]]; then
    echo "audit.sh: ACCEL_AUDIT_OFFLINE=1: advisories NOT checked" >&2
    kept=()
    for c in "${checks[@]}"; do
        [[ "$c" == advisories ]] || kept+=("$c")
    done
    checks=("${kept[@]}")
fi
exec cargo deny --locked check "${checks[@]}"
