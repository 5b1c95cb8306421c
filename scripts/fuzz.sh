#!/bin/sh
# Run every Go fuzz target in the module for SECONDS each (default 60), then
# print each target's total execs and average execs per second.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 minutes per target
#   FUZZ_MATCH=Frames scripts/fuzz.sh 300   # only targets whose name contains "Frames"
#
# Targets are found with `go test -list '^Fuzz' ./...`. Crashers are written
# by `go test` to PKG/testdata/fuzz/FuzzXxx/: keep them (they become
# regression seeds) and fix the bug.
#
# FUZZ_MINIMIZE (default 1000x) bounds how long go test minimizes each new
# input: a duration (5s) or a number of runs (1000x). With go test's default,
# 60 s per new input, the connection targets (1,000-2,000 inputs a second),
# which find new inputs every few seconds early on, spend most of a run
# minimizing, and go test counts those runs only when a minimization ends:
# a run often ends in the middle of one and reports a fraction of what ran.
# 1000 runs take 0.03 s for a parser target and about 0.5 s for a
# connection target. (FUZZ_MINIMIZE_TIME is the old name of the setting.)
set -eu

secs=${1:-60}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]  (a whole number of seconds per fuzz target)" >&2
	exit 2
	;;
esac
minimize=${FUZZ_MINIMIZE:-${FUZZ_MINIMIZE_TIME:-1000x}}
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# stats LOG prints "ELAPSED_S EXECS EXECS_PER_S NEW" from the last progress
# line go test wrote: "fuzz: elapsed: 1m0s, execs: 61234 (1021/sec), new
# interesting: 3 (total: 40)". The average is execs over elapsed time (the
# rate in parentheses is the last 3-second interval's).
stats() {
	awk '
	/^fuzz: elapsed: .*, execs: [0-9]+ / { last = $0 }
	END {
		if (last == "") { print "- - - -"; exit }
		split(last, f, /, /)
		el = f[1]; sub(/^fuzz: elapsed: /, "", el)
		s = 0; num = ""
		for (i = 1; i <= length(el); i++) {
			c = substr(el, i, 1)
			if (c ~ /[0-9.]/) { num = num c; continue }
			if (c == "h") s += num * 3600
			if (c == "m") s += num * 60
			if (c == "s") s += num
			num = ""
		}
		ex = f[2]; sub(/^execs: /, "", ex); sub(/ .*/, "", ex)
		nw = "-"
		if (match(last, /new interesting: [0-9]+/)) nw = substr(last, RSTART + 17, RLENGTH - 17)
		printf "%d %d %d %s\n", s, ex, (s > 0 ? ex / s : 0), nw
	}' "$1"
}

echo "$pairs" | {
	failed=""
	count=0
	: >"$tmp/summary"
	while read -r pkg name; do
		case $name in *"$match"*) ;; *) continue ;; esac
		count=$((count + 1))
		log="$tmp/$count.log"
		echo "=== $pkg $name: ${secs}s"
		{
			rc=0
			go test -run='^$' -fuzz="^${name}\$" -fuzztime="${secs}s" -fuzzminimizetime="$minimize" "$pkg" || rc=$?
			echo "$rc" >"$tmp/rc"
		} 2>&1 | tee "$log"
		result=ok
		if [ "$(cat "$tmp/rc")" != 0 ]; then
			failed="$failed $pkg.$name"
			result=FAILED
		fi
		echo "$pkg $name $(stats "$log") $result" >>"$tmp/summary"
	done
	if [ "$count" -eq 0 ]; then
		echo "fuzz.sh: no fuzz target matches FUZZ_MATCH=$match" >&2
		exit 1
	fi
	echo
	echo "fuzz.sh: ${secs}s per target, minimizing each new input for $minimize; EXECS is go test's count (a minimization still running at the end is not in it)"
	awk 'BEGIN { printf "%-44s %-28s %7s %11s %8s %5s %s\n", "PACKAGE", "TARGET", "SECONDS", "EXECS", "EXECS/S", "NEW", "RESULT" }
		{ printf "%-44s %-28s %7s %11s %8s %5s %s\n", $1, $2, $3, $4, $5, $6, $7 }' "$tmp/summary"
	if [ -n "$failed" ]; then
		echo "fuzz.sh: FAILED:$failed" >&2
		echo "crashers are in each package's testdata/fuzz/; rerun one with go test -run=FuzzXxx/NAME ./pkg" >&2
		exit 1
	fi
	echo "fuzz.sh: $count targets, ${secs}s each, no failures"
}
