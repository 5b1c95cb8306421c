//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// Agent order in a round and in the tables.
const (
	agentSSH = iota
	agentSafe
	agentBare
	agentCount
)

// cellRuns is one key type × connection count: every round drives each
// agent once, in turn (A, B, C, A, B, C …), so that load from other work
// on the machine falls on all of them alike.
type cellRuns struct {
	key    string
	conns  int
	rounds [][agentCount]cell
}

// measureCell drives agents (ssh-agent, safe-agent, bare keyring) rounds
// times each for d, interleaved, in an order that rotates by one agent
// each round.
func measureCell(ctx context.Context, agents [agentCount]*agentProc, k *benchKey, conns, rounds int, d time.Duration) (cellRuns, error) {
	cr := cellRuns{key: k.name, conns: conns}
	for r := range rounds {
		var row [agentCount]cell
		// Each round starts with the next agent, so no agent is always
		// measured right after another (ssh-agent's busy rounds would
		// otherwise always precede safe-agent's).
		for j := range agents {
			i := (r + j) % agentCount
			p := agents[i]
			if ctx.Err() != nil {
				return cr, ctx.Err()
			}
			c, err := drive(p.name, p.socket, k, conns, d)
			if err != nil {
				return cr, fmt.Errorf("%w\n%s", err, p.logTail(10))
			}
			row[i] = c
			fmt.Fprintf(os.Stderr, "  %-10s %2d conns round %d/%d %-12s %8.0f ops/s\n", k.name, conns, r+1, rounds, p.name, c.opsPerSec())
		}
		cr.rounds = append(cr.rounds, row)
	}
	return cr, nil
}

// opsOf is agent i's throughput in each round.
func (cr cellRuns) opsOf(i int) []float64 {
	out := make([]float64, len(cr.rounds))
	for r, row := range cr.rounds {
		out[r] = row[i].opsPerSec()
	}
	return out
}

// ratios is safe-agent's throughput over agent i's, round by round (each
// from the same round, so the same machine load).
func (cr cellRuns) ratios(i int) []float64 {
	out := make([]float64, len(cr.rounds))
	for r, row := range cr.rounds {
		out[r] = row[agentSafe].opsPerSec() / row[i].opsPerSec()
	}
	return out
}

// latency is agent i's p50 and p99 over all its rounds (medians of the
// rounds' percentiles).
func (cr cellRuns) latency(i int) (p50, p99 time.Duration) {
	var a, b []time.Duration
	for _, row := range cr.rounds {
		a, b = append(a, row[i].p50), append(b, row[i].p99)
	}
	return median(a), median(b)
}

// spread is (max − min) / median, in percent: how much one agent's rounds
// disagreed.
func spread(xs []float64) float64 {
	m := medianF(xs)
	if m == 0 {
		return 0
	}
	return 100 * (slices.Max(xs) - slices.Min(xs)) / m
}

func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// printCells writes the throughput table, the latency table and how noisy
// the rounds were.
func printCells(rep *report, cells []cellRuns) {
	rep.printf("\n| key | conns | ssh-agent ops/s | safe-agent ops/s | bare keyring ops/s | safe / ssh-agent | safe / bare keyring |\n")
	rep.printf("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, cr := range cells {
		rs, rb := cr.ratios(agentSSH), cr.ratios(agentBare)
		rep.printf("| %s | %d | %.0f | %.0f | %.0f | %.2f× (%.2f–%.2f) | %.2f× (%.2f–%.2f) |\n", cr.key, cr.conns,
			medianF(cr.opsOf(agentSSH)), medianF(cr.opsOf(agentSafe)), medianF(cr.opsOf(agentBare)),
			medianF(rs), slices.Min(rs), slices.Max(rs), medianF(rb), slices.Min(rb), slices.Max(rb))
	}
	rep.printf("\nMedians of %d interleaved rounds; ratios are per round (same load), median (min–max).\n", len(cells[0].rounds))
	rep.printf("\n| key | conns | agent | p50 | p99 | ops/s spread between rounds |\n|---|---:|---|---:|---:|---:|\n")
	names := [agentCount]string{"ssh-agent", "safe-agent", "bare keyring"}
	for _, cr := range cells {
		for i := range agentCount {
			p50, p99 := cr.latency(i)
			rep.printf("| %s | %d | %s | %s | %s | %.0f%% |\n", cr.key, cr.conns, names[i], fmtDur(p50), fmtDur(p99), spread(cr.opsOf(i)))
		}
	}
}
