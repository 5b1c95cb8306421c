#!/bin/sh
# Run every Go fuzz target in the module for SECONDS each (default 60).
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 minutes per target
#   FUZZ_MATCH=Frames scripts/fuzz.sh 300   # only targets whose name contains "Frames"
#
# Targets are found with `go test -list '^Fuzz' ./...`. Crashers are written
# by `go test` to PKG/testdata/fuzz/FuzzXxx/: keep them (they become
# regression seeds) and fix the bug. FUZZ_MINIMIZE_TIME (default 5s) bounds
# how long a new input is minimized: the Go default (60 s) lets slow targets
# spend most of their time minimizing.
set -eu

secs=${1:-60}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]  (a whole number of seconds per fuzz target)" >&2
	exit 2
	;;
esac
minimize=${FUZZ_MINIMIZE_TIME:-5s}
match=${FUZZ_MATCH:-}

cd "$(dirname "$0")/.."

# `go test -list` prints each package's matching names, then a line
# "ok  <package> <time>"; emit "<package> <target>" pairs.
list=$(go test -list '^Fuzz' ./... 2>&1) || {
	echo "$list" >&2
	echo "fuzz.sh: listing fuzz targets failed (does the module build? go vet ./...)" >&2
	exit 1
}
pairs=$(echo "$list" | awk '
	/^Fuzz/ { names[n++] = $1; next }
	/^ok[ \t]/ { for (i = 0; i < n; i++) print $2, names[i]; n = 0; next }
	{ n = 0 }
')
if [ -z "$pairs" ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi

failed=""
count=0
echo "$pairs" | {
	while read -r pkg name; do
		case $name in *"$match"*) ;; *) continue ;; esac
		count=$((count + 1))
		echo "=== $pkg $name: ${secs}s"
		if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="${secs}s" -fuzzminimizetime="$minimize" "$pkg"; then
			failed="$failed $pkg.$name"
		fi
	done
	if [ "$count" -eq 0 ]; then
		echo "fuzz.sh: no fuzz target matches FUZZ_MATCH=$match" >&2
		exit 1
	fi
	if [ -n "$failed" ]; then
		echo "fuzz.sh: FAILED:$failed" >&2
		echo "crashers are in each package's testdata/fuzz/; rerun one with go test -run=FuzzXxx/NAME ./pkg" >&2
		exit 1
	fi
	echo "fuzz.sh: $count targets, ${secs}s each, no failures"
}
