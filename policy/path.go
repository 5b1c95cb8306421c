package policy

import (
	"fmt"
	"strings"
)

// Path is the hosts a request came through, first to last, as people are
// shown them. It has one rendering in two forms: Long for prompts,
// notifications, logs and explanations, Short for tables.
type Path struct {
	Hops []PathHop
	// Tail says what follows the hops when the request's destination is
	// not its last hop.
	Tail PathTail
	// BoundTo, for TailNotHostbound, names the host the login's last
	// session-bind claims (that hop is not among Hops).
	BoundTo string
}

// PathHop is one verified session-bind, by the name people know the host
// by: its known_hosts name, else its host-key fingerprint.
type PathHop struct {
	Name      string
	Forwarded bool // the bind is for an agent forwarded to this host
}

// PathTail is how a path ends.
type PathTail int

const (
	TailNone         PathTail = iota // the hops are the whole path
	TailUnknown                      // a destination the connection did not bind: "?"
	TailBindFailed                   // a session-bind on the connection failed
	TailNotHostbound                 // a plain "publickey" login whose last bind is only a claim
)

// Path rendering words, shared by both forms.
const (
	pathHere      = "here"
	pathArrow     = " → "
	pathForwarded = " (forwarded)"
	pathUnknown   = "?"
	// maxPathParts bounds Long: a longer path keeps its first and last
	// parts, which say where it starts and where it ends.
	maxPathParts = 12
)

// Long is the path as prompts, notifications and explanations show it:
// "here → jump (forwarded) → db", "here → jump (forwarded) → ? (failed
// session-bind)", "here → ? (not host-bound; bound to db)".
func (p Path) Long() string {
	if len(p.Hops)+2 <= maxPathParts {
		return p.join(true) // the common case, built without a parts slice
	}
	parts := p.parts(true)
	if len(parts) > maxPathParts {
		head, tail := parts[:maxPathParts/2], parts[len(parts)-maxPathParts/2+1:]
		parts = append(append(append([]string{}, head...), fmt.Sprintf("(%d more)", len(parts)-maxPathParts+1)), tail...)
	}
	return strings.Join(parts, pathArrow)
}

// Short is the path for a table column: the same words as Long, but an
// unknown destination is just "?" whatever the reason, and nothing is
// left out (a table cuts to its width itself).
func (p Path) Short() string {
	return p.join(false)
}

// join is strings.Join(p.parts(long), pathArrow) in one allocation.
func (p Path) join(long bool) string {
	n := len(pathHere)
	for _, h := range p.Hops {
		n += len(pathArrow) + len(h.Name)
		if h.Forwarded {
			n += len(pathForwarded)
		}
	}
	tail := ""
	if p.Tail != TailNone {
		tail = p.tail(long)
		n += len(pathArrow) + len(tail)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(pathHere)
	for _, h := range p.Hops {
		b.WriteString(pathArrow)
		b.WriteString(h.Name)
		if h.Forwarded {
			b.WriteString(pathForwarded)
		}
	}
	if p.Tail != TailNone {
		b.WriteString(pathArrow)
		b.WriteString(tail)
	}
	return b.String()
}

// parts are the path's elements: "here", each hop, then the tail.
func (p Path) parts(long bool) []string {
	out := make([]string, 0, len(p.Hops)+2)
	out = append(out, pathHere)
	for _, h := range p.Hops {
		n := h.Name
		if h.Forwarded {
			n += pathForwarded
		}
		out = append(out, n)
	}
	if p.Tail == TailNone {
		return out
	}
	return append(out, p.tail(long))
}

func (p Path) tail(long bool) string {
	if !long {
		return pathUnknown
	}
	switch p.Tail {
	case TailBindFailed:
		return pathUnknown + " (failed session-bind)"
	case TailNotHostbound:
		return pathUnknown + " (not host-bound; bound to " + p.BoundTo + ")"
	}
	return pathUnknown
}

// Destination is the host a request goes to when the path names it (its
// last hop, with nothing unknown after it), else "".
func (p Path) Destination() string {
	if p.Tail != TailNone || len(p.Hops) == 0 {
		return ""
	}
	return p.Hops[len(p.Hops)-1].Name
}

// WithNames is the path with every host name passed through f: callers
// that show names from others escape and shorten them with it.
func (p Path) WithNames(f func(string) string) Path {
	out := Path{Hops: make([]PathHop, len(p.Hops)), Tail: p.Tail, BoundTo: p.BoundTo}
	for i, h := range p.Hops {
		out.Hops[i] = PathHop{Name: f(h.Name), Forwarded: h.Forwarded}
	}
	if out.BoundTo != "" {
		out.BoundTo = f(out.BoundTo)
	}
	return out
}
