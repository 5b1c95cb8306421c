package agent

import (
	"slices"
	"sync"
	"time"
)

// maxUnboundClients bounds the programs remembered by unboundClients.
const maxUnboundClients = 32

// unboundClients remembers programs that asked for login signatures on a
// connection without any session-bind. The protocol cannot tell whether
// such a program forwards the agent, so `safe-agent doctor` warns about
// them when keys rely on destination rules.
type unboundClients struct {
	mu sync.Mutex
	m  map[string]*UnboundClient // by executable
}

func (u *unboundClients) seen(p peerInfo, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = map[string]*UnboundClient{}
	}
	c := u.m[p.Exe]
	if c == nil {
		if len(u.m) >= maxUnboundClients {
			return
		}
		c = &UnboundClient{Exe: p.Exe}
		u.m[p.Exe] = c
	}
	c.Logins++
	c.Process, c.LastSeen = p.Chain, now
}

func (u *unboundClients) list() []UnboundClient {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]UnboundClient, 0, len(u.m))
	for _, c := range u.m {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b UnboundClient) int { return b.LastSeen.Compare(a.LastSeen) })
	return out
}
