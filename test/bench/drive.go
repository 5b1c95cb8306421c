//go:build linux

package main

import (
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
)

// cell is the result of one agent × key type × connection count.
type cell struct {
	agent    string
	key      string
	conns    int
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (c cell) opsPerSec() float64 { return float64(c.ops) / c.elapsed.Seconds() }

// warmup signs this many times per connection before timing starts.
const warmup = 20

// drive signs 64-byte data with k over conns connections to socket for d,
// each connection one goroutine doing sequential requests, and returns
// throughput and latency percentiles. The first signature of each
// connection is verified; later ones are not, so the client's CPU goes to
// asking, not to checking (both agents are measured the same way).
func drive(agentName, socket string, k *benchKey, conns int, d time.Duration) (cell, error) {
	data := make([]byte, 64)
	if _, err := rand.Read(data); err != nil {
		return cell{}, err
	}
	type worker struct {
		c   net.Conn
		ag  sshagent.ExtendedAgent
		lat []time.Duration
		err error
	}
	ws := make([]*worker, conns)
	for i := range ws {
		c, err := net.Dial("unix", socket)
		if err != nil {
			for _, w := range ws[:i] {
				w.c.Close()
			}
			return cell{}, fmt.Errorf("connect %s: %w", agentName, err)
		}
		ws[i] = &worker{c: c, ag: sshagent.NewClient(c), lat: make([]time.Duration, 0, 1<<16)}
	}
	defer func() {
		for _, w := range ws {
			w.c.Close()
		}
	}()
	flags := sshagent.SignatureFlags(k.flags)
	// Warm up and check each connection signs correctly.
	for _, w := range ws {
		for i := range warmup {
			sig, err := w.ag.SignWithFlags(k.pub, data, flags)
			if err != nil {
				return cell{}, fmt.Errorf("%s refused to sign with %s: %w", agentName, k.name, err)
			}
			if i == 0 {
				if err := k.pub.Verify(data, sig); err != nil {
					return cell{}, fmt.Errorf("%s returned a bad %s signature: %w", agentName, k.name, err)
				}
			}
		}
	}
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	var deadline time.Time
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				sig, err := w.ag.SignWithFlags(k.pub, data, flags)
				if err == nil && sig == nil {
					err = fmt.Errorf("empty signature")
				}
				if err != nil {
					w.err = err
					return
				}
				w.lat = append(w.lat, time.Since(t0))
			}
		}()
	}
	start := time.Now()
	deadline = start.Add(d)
	close(startGate)
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, w := range ws {
		if w.err != nil {
			return cell{}, fmt.Errorf("%s sign with %s failed under load: %w", agentName, k.name, w.err)
		}
		all = append(all, w.lat...)
	}
	if len(all) == 0 {
		return cell{}, fmt.Errorf("%s: no signature completed in %v", agentName, d)
	}
	slices.Sort(all)
	return cell{
		agent: agentName, key: k.name, conns: conns, ops: len(all), elapsed: elapsed,
		p50: percentile(all, 0.50), p99: percentile(all, 0.99),
	}, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted)) + 0.5)
	i = min(max(i-1, 0), len(sorted)-1)
	return sorted[i]
}

// addKeys loads keys into the agent at socket.
func addKeys(socket string, keys []*benchKey) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ag := sshagent.NewClient(c)
	for _, k := range keys {
		if err := ag.Add(sshagent.AddedKey{PrivateKey: k.priv, Comment: k.comment}); err != nil {
			return fmt.Errorf("add %s key: %w", k.name, err)
		}
	}
	return nil
}

// memConns is how many connections signSpread uses: enough to be quick,
// as a few busy clients would be.
const memConns = 4

// signSpread makes n signatures, round-robin over keys (every key signs
// at least once when n ≥ len(keys): keys that were loaded and used are
// what a memory figure should count), over memConns connections.
func signSpread(socket string, keys []*benchKey, n int) error {
	conns := min(memConns, n)
	errs := make(chan error, conns)
	for c := range conns {
		go func() {
			errs <- signShare(socket, keys, c, conns, n)
		}()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// signShare makes signatures i, i+step, i+2·step … < n on a connection of
// its own; signature j uses keys[j % len(keys)].
func signShare(socket string, keys []*benchKey, i, step, n int) error {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer c.Close()
	ag := sshagent.NewClient(c)
	data := make([]byte, 64)
	for j := i; j < n; j += step {
		k := keys[j%len(keys)]
		if _, err := ag.SignWithFlags(k.pub, data, sshagent.SignatureFlags(k.flags)); err != nil {
			return fmt.Errorf("sign with %s: %w", k.comment, err)
		}
	}
	return nil
}
