package agent

// What a forwarded connection may write to the audit log. Whoever holds a
// forwarded socket can send requests as fast as the link allows; if every
// one became a record, size-based rotation would soon delete the records
// of the attack itself. So, for connections that are not local:
//
//   - repeated events are aggregated per connection: one "list" record per
//     path, one "hidden key" refusal per key and path, one "bind-failed"
//     record; what repeats is counted and written as one summary when
//     the connection ends;
//   - every record they cause draws on a budget shared by all connections
//     through the same forwarded origin (the path up to the first
//     forwarding hop, which the user's own ssh binds, so the far side
//     cannot vary it): auditBurst records at once, then auditRate a
//     second. Signatures the policy allowed have a budget of their own
//     (signBurst, signRate), so that lists and refusals cannot starve
//     real use. What a budget refuses is counted and written as one
//     summary record a second at most. A signature the budget cannot
//     record is refused: no signature without its record.
//
// Local connections (no hop, no failed bind) are not limited: they are the
// user's own programs.

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
)

const (
	auditBurst = 200             // records (other than signatures) a forwarded origin may write at once
	auditRate  = 20              // a second after that
	signBurst  = 1000            // signatures a forwarded origin may get at once
	signRate   = 50              // a second after that
	summaryGap = 1 * time.Second // at most one summary record a second per path
)

// auditBudgets holds one budget per forwarded origin.
type auditBudgets struct {
	mu sync.Mutex
	m  map[string]*auditBudget
}

type auditBudget struct {
	tokens  float64
	last    time.Time
	dropped map[string]int // event kind → records not written
	pending bool           // a summary is scheduled
	path    []audit.Hop    // the first path seen, for the summary
}

// originKey is the budget a connection draws on: the part of its path
// the user's own ssh vouches for (forwardOrigin), "failed-bind" for a
// connection whose bind failed before any forwarding hop, or "" for a
// local connection (not limited).
func originKey(hops []sshwire.Hop, bindFailed bool) string {
	if o := forwardOrigin(hops); o != "" {
		return "fwd:" + o
	}
	if bindFailed {
		return "failed-bind"
	}
	return ""
}

// take spends one record from origin's budget; false means the record must
// not be written (it is counted as kind instead).
func (s *Server) take(origin, kind string, path []audit.Hop) bool {
	return s.takeFrom(origin, auditBurst, auditRate, kind, path)
}

// takeSign is take for a signature the policy allowed.
func (s *Server) takeSign(origin string, path []audit.Hop) bool {
	if origin == "" {
		return true
	}
	return s.takeFrom(origin+"|sign", signBurst, signRate, "signatures refused by the rate limit", path)
}

func (s *Server) takeFrom(origin string, burst, rate float64, kind string, path []audit.Hop) bool {
	if origin == "" {
		return true
	}
	now := s.now()
	b := &s.budgets
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*auditBudget{}
	}
	bg := b.m[origin]
	if bg == nil {
		bg = &auditBudget{tokens: burst, last: now, path: path}
		b.m[origin] = bg
	}
	bg.tokens = min(burst, bg.tokens+now.Sub(bg.last).Seconds()*rate)
	bg.last = now
	if bg.tokens >= 1 {
		bg.tokens--
		return true
	}
	if bg.dropped == nil {
		bg.dropped = map[string]int{}
	}
	bg.dropped[kind]++
	if !bg.pending {
		bg.pending = true
		time.AfterFunc(summaryGap, func() { s.flushBudget(origin) })
	}
	return false
}

// flushBudget writes one summary of what origin's budget refused.
func (s *Server) flushBudget(origin string) {
	b := &s.budgets
	b.mu.Lock()
	bg := b.m[origin]
	if bg == nil || len(bg.dropped) == 0 {
		if bg != nil {
			bg.pending = false
		}
		b.mu.Unlock()
		return
	}
	dropped, path := bg.dropped, bg.path
	bg.dropped, bg.pending = nil, false
	b.mu.Unlock()
	s.auditEvent(audit.Record{Event: audit.EventRateLimited, Decision: audit.DecisionDenied, Path: path, Rule: "audit rate limit",
		Reason: fmt.Sprintf("too many records a second through this forwarded path; %s were counted, not recorded one by one (signatures among them were refused)", countsText(dropped))})
	s.log.Warn("audit rate limit: forwarded requests counted, not recorded one by one", "origin", origin, "counts", countsText(dropped))
}

func countsText(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}

// connRecords is one connection's aggregation state.
type connRecords struct {
	listed    map[string]bool // path text → a list record was written
	hidden    map[string]bool // key blob + path text → its refusal was written
	repeats   map[string]int  // event kind → repeats not written one by one
	bindFails int             // failed binds after the first
}

// record writes a record caused by a request on this connection, within
// its origin's budget; it reports whether the record was written.
func (a *connAgent) record(kind string, rec audit.Record) bool {
	if !a.srv.take(originKey(a.bind.Hops, a.bind.Failed), kind, rec.Path) {
		return false
	}
	a.srv.auditEvent(rec)
	return true
}

// repeat counts an event that is not written one by one.
func (a *connAgent) repeat(kind string) {
	if a.recs.repeats == nil {
		a.recs.repeats = map[string]int{}
	}
	a.recs.repeats[kind]++
}

// flushRecords writes, when the connection ends, one summary of what it
// repeated.
func (a *connAgent) flushRecords() {
	if len(a.recs.repeats) == 0 {
		return
	}
	// The summary draws on the origin's budget too: thousands of short
	// connections must not each add one.
	a.record("connection summaries", audit.Record{Event: audit.EventSummary, Client: a.auditClient(), Path: a.srv.auditPath(a.bind.Hops),
		Detail: "repeated on this connection and not recorded one by one: " + countsText(a.recs.repeats)})
}
