package policy

import (
	"fmt"
	"strings"
	"testing"
)

func TestPathRendering(t *testing.T) {
	jump := PathHop{Name: "jump", Forwarded: true}
	db := PathHop{Name: "db.internal"}
	for _, tc := range []struct {
		name        string
		p           Path
		long, short string
		dest        string
	}{
		{"local", Path{}, "here", "here", ""},
		{"one login hop", Path{Hops: []PathHop{db}}, "here → db.internal", "here → db.internal", "db.internal"},
		{"through a forwarded agent", Path{Hops: []PathHop{jump, db}},
			"here → jump (forwarded) → db.internal", "here → jump (forwarded) → db.internal", "db.internal"},
		{"forwarded, destination not bound", Path{Hops: []PathHop{jump}, Tail: TailUnknown},
			"here → jump (forwarded) → ?", "here → jump (forwarded) → ?", ""},
		{"failed bind", Path{Hops: []PathHop{jump}, Tail: TailBindFailed},
			"here → jump (forwarded) → ? (failed session-bind)", "here → jump (forwarded) → ?", ""},
		{"failed first bind", Path{Tail: TailBindFailed},
			"here → ? (failed session-bind)", "here → ?", ""},
		{"not host-bound", Path{Hops: []PathHop{jump}, Tail: TailNotHostbound, BoundTo: "db.internal"},
			"here → jump (forwarded) → ? (not host-bound; bound to db.internal)", "here → jump (forwarded) → ?", ""},
		{"forwarded last hop", Path{Hops: []PathHop{jump}}, "here → jump (forwarded)", "here → jump (forwarded)", "jump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Long(); got != tc.long {
				t.Errorf("Long() = %q, want %q", got, tc.long)
			}
			if got := tc.p.Short(); got != tc.short {
				t.Errorf("Short() = %q, want %q", got, tc.short)
			}
			if got := tc.p.Destination(); got != tc.dest {
				t.Errorf("Destination() = %q, want %q", got, tc.dest)
			}
		})
	}
}

// A path too long to read in a prompt keeps its first and last parts;
// a table's Short form keeps every hop (the table cuts to its width).
func TestPathTooLong(t *testing.T) {
	var p Path
	for i := range 19 {
		p.Hops = append(p.Hops, PathHop{Name: "h" + string(rune('b'+i))})
	}
	want := "here → hb → hc → hd → he → hf → (9 more) → hp → hq → hr → hs → ht"
	if got := p.Long(); got != want {
		t.Errorf("Long() = %q, want %q", got, want)
	}
	if got := strings.Count(p.Short(), "→"); got != 19 {
		t.Errorf("Short() has %d arrows, want 19: %q", got, p.Short())
	}
	p.Hops = p.Hops[:11] // 12 parts with "here": shown whole
	if got := p.Long(); strings.Contains(got, "more") || strings.Count(got, "→") != 11 {
		t.Errorf("Long() of 12 parts = %q, want every hop", got)
	}
}

func TestPathWithNames(t *testing.T) {
	p := Path{Hops: []PathHop{{Name: "a\nb", Forwarded: true}}, Tail: TailNotHostbound, BoundTo: "c\nd"}
	got := p.WithNames(func(s string) string { return fmt.Sprintf("%q", s) }).Long()
	if want := `here → "a\nb" (forwarded) → ? (not host-bound; bound to "c\nd")`; got != want {
		t.Errorf("WithNames(quote).Long() = %q, want %q", got, want)
	}
	if p.Hops[0].Name != "a\nb" {
		t.Error("WithNames changed the original path")
	}
}
