package policy

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"db.internal", "db.internal", true},
		{"db.internal", "db.internalx", false},
		{"*.internal", "db.internal", true},
		{"*.internal", "internal", false},
		{"db?.internal", "db1.internal", true},
		{"db?.internal", "db.internal", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"work-*", "work-laptop", true},
		{"[*]:2222", "[git.example]:2222", true},
	}
	for _, tc := range tests {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func TestGlobSubsumesAndOverlap(t *testing.T) {
	tests := []struct {
		p, w              string
		subsumes, overlap bool
	}{
		{"*.internal", "*.internal", true, true},
		{"*.internal", "db*.internal", true, true},
		{"*", "*.lab", true, true},
		{"db*.internal", "*.internal", false, true},
		{"a?c", "a*c", false, true}, // '?' is one byte, '*' any run
		{"a?c", "a?c", true, true},
		{"*.lab", "*.internal", false, false},
		{"db.lab", "*.lab", false, true},
		{"x*.lab", "*.lab", false, true},
		{"*.prod.internal", "db*.internal", false, true},
		{"a*", "b*", false, false},
		{"", "", true, true},
		{"*", "", true, true},
		{"?", "*", false, true},
		{"*a*b*", "xaybz", true, true},
		{strings.Repeat("x", 70) + "*", strings.Repeat("x", 80) + "*.lab", true, true}, // longer than the stack rows
		{strings.Repeat("x", 70) + "?", strings.Repeat("x", 70) + "*", false, true},
	}
	for _, tc := range tests {
		if got := globSubsumes(tc.p, tc.w); got != tc.subsumes {
			t.Errorf("globSubsumes(%q, %q) = %v, want %v", tc.p, tc.w, got, tc.subsumes)
		}
		if got := globOverlap(tc.p, tc.w); got != tc.overlap {
			t.Errorf("globOverlap(%q, %q) = %v, want %v", tc.p, tc.w, got, tc.overlap)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{"jump.example", ""},
		{"Jump.Example", ""},
		{"*.internal", ""},
		{"[git.example]:2222", ""},
		{"jump>db>other", ""},
		{"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", ""},
		{"", `empty destination: write a host name, a glob such as "*.example.com", "[host]:port", a host key fingerprint "SHA256:…" or "jump>target"`},
		{"a>", `destination "a>" has an empty host around ">": write it like "jump.example>db.internal"`},
		{"!db", `destination "!db": negated host "!db" is not supported here: put the host in deny instead`},
		{"[git.example]", `destination "[git.example]": host "[git.example]": write a host with a port as "[host]:port"`},
		{"a,b", `destination "a,b": host "a,b" contains ','; a host is letters, digits, '.', '-', '_', ':' and the wildcards '*' and '?'`},
		{"a>b>c>d>e>f>g>h>i>j>k>l>m>n>o>p>q", `destination "a>b>c>d>e>f>g>h>i>j>k>l>m>n>o>p>q" chains 17 hosts; at most 16 are possible`},
	}
	for _, tc := range tests {
		err := CheckPattern(tc.in)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.err {
			t.Errorf("CheckPattern(%q) = %q, want %q", tc.in, got, tc.err)
		}
	}
}

func TestRuleForOrder(t *testing.T) {
	src := `
[[key]]
match = "work-*"
[[key]]
match = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
[[key]]
match = "*"
`
	p := mustParse(t, src, files{})
	tests := []struct {
		k    Key
		want string
	}{
		{Key{Comment: "work-1", Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}, `key "work-*"`},
		{Key{Comment: "home", Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}, `key "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"`},
		{Key{Comment: "home"}, `key "*"`},
		{Key{}, `key "*"`},
	}
	for _, tc := range tests {
		if got := p.ruleFor(tc.k).section; got != tc.want {
			t.Errorf("ruleFor(%+v) = %s, want %s", tc.k, got, tc.want)
		}
	}
}

func TestCheckSettings(t *testing.T) {
	neg, big, ok := -1, 17, 2
	tests := []struct {
		s    Settings
		want string
	}{
		{Settings{Allow: []string{"jump", "jump>db"}, Deny: []string{"*.prod"}, MaxForwardDepth: &ok}, ""},
		{Settings{Allow: []string{"a>"}}, `allow: destination "a>" has an empty host around ">": write it like "jump.example>db.internal"`},
		{Settings{Deny: []string{""}}, `deny: empty destination: write a host name, a glob such as "*.example.com", "[host]:port", a host key fingerprint "SHA256:…" or "jump>target"`},
		{Settings{MaxForwardDepth: &neg}, "max forward depth -1 is out of range: use 0 (never through a forwarded agent) to 16"},
		{Settings{MaxForwardDepth: &big}, "max forward depth 17 is out of range: use 0 (never through a forwarded agent) to 16"},
	}
	for _, tc := range tests {
		got := ""
		if err := CheckSettings(tc.s); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("CheckSettings(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// refGlobSubsumes is the plain recursive definition globSubsumes computes.
func refGlobSubsumes(p, w string) bool {
	switch {
	case p == "":
		return w == ""
	case p[0] == '*':
		return refGlobSubsumes(p[1:], w) || (w != "" && refGlobSubsumes(p, w[1:]))
	case w == "":
		return false
	case p[0] == '?':
		return w[0] != '*' && refGlobSubsumes(p[1:], w[1:])
	default:
		return w[0] == p[0] && refGlobSubsumes(p[1:], w[1:])
	}
}

// TestGlobSubsumesExhaustive compares globSubsumes with its definition on
// every pair of patterns up to 4 bytes over {a, b, *, ?}, and checks that
// the literal-ends filter lintRules applies first never rejects a pair
// that is subsumed.
func TestGlobSubsumesExhaustive(t *testing.T) {
	pats := []string{""}
	for n := 0; n < len(pats) && len(pats[n]) < 4; n++ {
		for _, c := range "ab*?" {
			pats = append(pats, pats[n]+string(c))
		}
	}
	for _, p := range pats {
		pre, suf := literalEnds(p)
		for _, w := range pats {
			want := refGlobSubsumes(p, w)
			if got := globSubsumes(p, w); got != want {
				t.Fatalf("globSubsumes(%q, %q) = %v, want %v", p, w, got, want)
			}
			if want && !(strings.HasPrefix(w, pre) && strings.HasSuffix(w, suf)) {
				t.Fatalf("literalEnds(%q) = %q, %q rules out %q, which it subsumes", p, pre, suf, w)
			}
		}
	}
}
