#!/usr/bin/env bash
# with-load.sh CMD...: run CMD while every core is kept busy by other
# processes (one busy loop per core, same priority as CMD), the way a
# shared CI runner or a busy host treats the executor. The loops are ours
# and are ended by pid when CMD ends.
set -uo pipefail
n=${LOAD_PROCS:-$(nproc)}
pids=()
stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait "${pids[@]}" 2>/dev/null
}
trap stop EXIT
for ((i = 0; i < n; i++)); do
	(while :; do :; done) &
	pids+=($!)
done
echo "with-load: $n busy loops (pids ${pids[*]}) beside: $*" >&2
"$@"
