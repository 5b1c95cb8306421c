package audit

import "github.com/safe-agent/safe-agent/policy"

// PathOf is a record's hops as a policy.Path, the one rendering of a hop
// path: a hop is named by its first known_hosts name, else by its host-key
// fingerprint passed through fp (nil: as recorded).
func PathOf(hops []Hop, fp func(string) string) policy.Path {
	p := policy.Path{Hops: make([]policy.PathHop, len(hops))}
	for i, h := range hops {
		name := h.Fingerprint
		if fp != nil {
			name = fp(name)
		}
		if len(h.Names) > 0 {
			name = h.Names[0]
		}
		p.Hops[i] = policy.PathHop{Name: name, Forwarded: h.Forwarded}
	}
	return p
}
