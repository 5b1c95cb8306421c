package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
)

// Connection limits. Every channel a forwarded agent opens becomes one
// connection to this agent from the user's own ssh process, so whoever
// holds the far end of `ssh -A` decides how many connections that process
// has. The limits keep room for everyone else:
//
//   - a per-process cap: all channels of one `ssh -A` session come from
//     one local ssh process;
//   - a per-path cap, applied once a session-bind makes a connection
//     forwarded, on the part of the path the user's own ssh vouches for;
//   - the global cap, whose last slots (the reserve) only a process with
//     no other connection open can take: `ssh-add -l`, `git commit -S` or
//     a new `ssh` always find a slot while one process hogs the rest;
//   - an idle timeout, so connections left open and unused go away.
const (
	// DefaultMaxConns is the default bound on concurrent client connections.
	DefaultMaxConns = 4096
	// DefaultMaxConnsPerProcess is the default bound on one process's
	// concurrent connections: a quarter of the global cap. Honest clients
	// hold one at a time (ssh keeps its agent connection for the
	// authentication only); one ssh multiplexing many forwarded sessions
	// stays far below.
	DefaultMaxConnsPerProcess = 1024
	// DefaultMaxConnsPerPath is the default bound on concurrent
	// connections through one forwarded path: each is one agent channel
	// opened on the far host, and people run a handful at a time.
	DefaultMaxConnsPerPath = 256
	// DefaultReservedConns is the default number of the global cap's
	// slots kept for processes with no connection open (at most 1/64 of
	// the cap, so a small --max-connections is not all reserve).
	DefaultReservedConns = 64
	// DefaultIdleTimeout closes connections that sent no request for this
	// long while nothing was in progress on them.
	DefaultIdleTimeout = 10 * time.Minute
)

// connLimits are Options' limits with defaults applied; 0 means none.
type connLimits struct {
	total, reserve, perProcess, perPath int
	idle                                time.Duration
}

func resolveLimits(o Options) connLimits {
	l := connLimits{total: o.MaxConns, perProcess: o.MaxConnsPerProcess, perPath: o.MaxConnsPerPath, reserve: o.ReservedConns, idle: o.IdleTimeout}
	if l.total <= 0 {
		l.total = DefaultMaxConns
	}
	switch {
	case l.perProcess == 0:
		l.perProcess = DefaultMaxConnsPerProcess
	case l.perProcess < 0:
		l.perProcess = 0
	}
	switch {
	case l.perPath == 0:
		l.perPath = DefaultMaxConnsPerPath
	case l.perPath < 0:
		l.perPath = 0
	}
	switch {
	case l.reserve == 0:
		l.reserve = min(DefaultReservedConns, l.total/64)
	case l.reserve < 0:
		l.reserve = 0
	}
	l.reserve = min(l.reserve, l.total-1)
	switch {
	case l.idle == 0:
		l.idle = DefaultIdleTimeout
	case l.idle < 0:
		l.idle = 0
	}
	return l
}

// admit counts a new connection from process pid, or says why not.
func (s *Server) admit(pid int) (refused string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, has := s.lim, s.perPID[pid]
	switch {
	case l.perProcess > 0 && has >= l.perProcess:
		return fmt.Sprintf("too many connections from this process (%d open; limit %d per process)", has, l.perProcess)
	case s.open >= l.total:
		return fmt.Sprintf("too many connections (limit %d)", l.total)
	case has > 0 && s.open >= l.total-l.reserve:
		return fmt.Sprintf("too many connections: the last %d of %d are kept for processes with no connection open, and this one has %d", l.reserve, l.total, has)
	}
	s.open++
	s.perPID[pid]++
	return ""
}

// release undoes admit (and the path count, if any) when a connection ends.
func (s *Server) release(pid int, origin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.perPID[pid]--; s.perPID[pid] <= 0 {
		delete(s.perPID, pid)
	}
	if origin != "" {
		if s.perPath[origin]--; s.perPath[origin] <= 0 {
			delete(s.perPath, origin)
		}
	}
}

// forwardOrigin is the part of a path that the user's own ssh vouches
// for: the hops up to and including the first forwarding hop, as host-key
// fingerprints ("" when no hop is forwarded). Everything after it comes
// from the far host, which can make up host keys and so could open each
// connection on a "new" path; this prefix it cannot change.
func forwardOrigin(hops []sshwire.Hop) string {
	var b strings.Builder
	for _, h := range hops {
		b.WriteString(hostFingerprint(h.HostKey))
		if h.Forwarded {
			return b.String()
		}
		b.WriteByte('>')
	}
	return ""
}

// errTooManyOnPath ends a forwarded connection over its path's cap.
var errTooManyOnPath = errors.New("too many connections through this forwarded path")

// admitForwarded counts the connection against its forwarded path once a
// session-bind made it forwarded. Over the cap the connection is closed
// (after the failure reply): failing the bind alone would not do, since
// ssh goes on relaying the channel when its bind fails.
func (s *Server) admitForwarded(a *connAgent) error {
	sc := a.conn
	if sc.origin != "" || s.lim.perPath <= 0 {
		return nil
	}
	origin := forwardOrigin(a.bind.Hops)
	if origin == "" {
		return nil
	}
	s.mu.Lock()
	n := s.perPath[origin]
	ok := n < s.lim.perPath
	if ok {
		s.perPath[origin]++
		sc.origin = origin
	}
	s.mu.Unlock()
	if ok {
		return nil
	}
	reason := fmt.Sprintf("%v (%d open; limit %d per path)", errTooManyOnPath, n, s.lim.perPath)
	s.refused("path "+origin, a.peer, reason, a.bind.Hops)
	sc.stop()
	return errTooManyOnPath
}

// refusedAtAccept logs and audits a connection refused before it was
// served; the process chain is read only for the lines that are written.
func (s *Server) refusedAtAccept(peer peerInfo, reason string) {
	s.refused(fmt.Sprintf("pid %d", peer.PID), peer, reason, nil)
}

// refused writes the log line and the audit record of a refused
// connection, at most one per key (a process or a path) and
// refusalInterval: a flood of refusals must not flood the log too.
func (s *Server) refused(key string, peer peerInfo, reason string, hops []sshwire.Hop) {
	write, skipped := s.refusals.note(key, s.now())
	if !write {
		return
	}
	if peer.Chain == "" {
		peer.Chain, peer.Exe = processChain(peer.PID, 4)
	}
	attrs := []any{"pid", peer.PID, "process", peer.Chain}
	if len(hops) > 0 {
		attrs = append(attrs, "path", s.pathText(hops, false))
	}
	detail := ""
	if skipped > 0 {
		detail = fmt.Sprintf("%d more refused since the last record", skipped)
		attrs = append(attrs, "refused_unlogged", skipped)
	}
	s.log.Warn("connection refused: "+reason, attrs...)
	s.auditEvent(audit.Record{Event: audit.EventConnRefused, Decision: audit.DecisionDenied, Reason: reason, Detail: detail,
		Client: &audit.Client{PID: peer.PID, UID: peer.UID, Exe: peer.Exe, Chain: peer.Chain}, Path: s.auditPath(hops)})
}

// refusalInterval is how often refusals of one key are written out.
const refusalInterval = 10 * time.Second

// refusalLog rate-limits the lines about refused connections.
type refusalLog struct {
	mu   sync.Mutex
	keys map[string]*refusalCount
}

type refusalCount struct {
	written time.Time
	skipped int
}

// note records one refusal for key; it says whether to write it out and
// how many were not written since the last one that was.
func (r *refusalLog) note(key string, now time.Time) (write bool, skipped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]*refusalCount{}
	}
	c := r.keys[key]
	if c != nil && now.Sub(c.written) < refusalInterval {
		c.skipped++
		return false, 0
	}
	if c == nil {
		if len(r.keys) >= 1024 {
			r.pruneLocked(now)
		}
		c = &refusalCount{}
		r.keys[key] = c
	}
	skipped, c.skipped, c.written = c.skipped, 0, now
	return true, skipped
}

// pruneLocked forgets keys with nothing left to report.
func (r *refusalLog) pruneLocked(now time.Time) {
	for k, c := range r.keys {
		if now.Sub(c.written) >= refusalInterval && c.skipped == 0 {
			delete(r.keys, k)
		}
	}
	if len(r.keys) < 1024 {
		return
	}
	// Very many keys with refusals not yet reported: drop their counts
	// rather than grow without bound.
	for k, c := range r.keys {
		if now.Sub(c.written) >= refusalInterval {
			delete(r.keys, k)
		}
	}
}
