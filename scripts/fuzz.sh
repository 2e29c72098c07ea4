#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 10m), one after another,
# and prints one summary line per target. Usage: scripts/fuzz.sh [duration]
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-${FUZZTIME:-10m}}
parallel=${FUZZ_PARALLEL:-1}
targets=(
	"./bridge/ FuzzReadFrame"
	"./bridge/ FuzzDecode"
	"./bridge/ FuzzValidate"
	"./rvalue/ FuzzUnmarshal"
)
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	log=$(mktemp)
	start=$(date +%s)
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$time" -parallel "$parallel" "$pkg" >"$log" 2>&1; then
		cat "$log"
		echo "FAIL $name: see the failing input under ${pkg}testdata/fuzz/$name" >&2
		rm -f "$log"
		exit 1
	fi
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	corpus=$(grep -o 'total: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	echo "$name: ${time} ($(( $(date +%s) - start )) s), ${execs:-0} execs, corpus ${corpus:-0}, no failure"
	rm -f "$log"
done
