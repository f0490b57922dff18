#!/bin/sh
# Measures where sending scattered runs as an I/O vector (zero-copy) beats gathering them into one buffer.
# The same 256 rows of 3 KiB go out as RUNS runs; one daemon is forced to use iovec, the other to gather.
# Interleaved rounds; prints requests/s per round and the median ratio iovec/gather per RUNS.
#   loadtest/iov_threshold.sh [ROUNDS] [SECONDS]
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-4}
m=loadtest/data/m50k.npy
[ -f $m ] || /usr/bin/python3 loadtest/make_matrix.py $m 50000 768
./embd serve $m --port 18181 --access-log=false --plan.iov_min_run_bytes 0 --plan.iov_max_segments 1024 2>/dev/null &
iov=$!
./embd serve $m --port 18182 --access-log=false --plan.iov_max_segments 1 2>/dev/null &
gat=$!
trap 'kill $iov $gat 2>/dev/null' EXIT
sleep 0.5
# Warm the page cache so both read resident pages.
cat $m >/dev/null
rps() { # port runs: requests/s, or exit when any answer was not a 200 (a broken script is not a result)
	out=$(ROWS=50000 RUNS=$2 wrk -t2 -c32 -d${secs}s -s loadtest/runs.lua http://127.0.0.1:$1 2>&1)
	if echo "$out" | grep -q -e "Non-2xx" -e "lua"; then
		echo "wrk: $out" >&2
		exit 1
	fi
	echo "$out" | awk '/Requests\/sec/ {print $2}'
}
printf "%-6s %-10s %12s %12s %8s\n" runs run_bytes iovec_rps gather_rps ratio
for runs in ${RUNS_LIST:-1 2 4 8 16 32 64 128 256}; do
	ratios=""
	for r in $(seq "$rounds"); do
		a=$(rps 18181 $runs)
		b=$(rps 18182 $runs)
		ratio=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')
		ratios="$ratios $ratio"
		printf "%-6s %-10s %12s %12s %8s\n" $runs $((256 / runs * 3072)) "$a" "$b" "$ratio"
	done
	echo "$ratios" | tr ' ' '\n' | sed '/^$/d' | sort -n | awk -v r=$runs '{v[NR]=$1} END {printf "median runs=%s iovec/gather %.3f\n", r, v[int((NR+1)/2)]}'
done
