package policy

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestHostNames(t *testing.T) {
	w := newWorld(t)
	extra := strings.Join([]string{
		w.other.line("[other.example]:22,Other2.Example"), // port 22 written as the plain name; lower-cased
		w.git.line("!bad.example,good.example,bad.example"),
		w.stranger.line(knownhosts.HashHostname("[hashed.example]:2200")),
		w.stranger.line(knownhosts.HashHostname("not-in-policy.example")),
	}, "\n")
	// The policy mentions hashed.example and [hashed.example]:2200 literally,
	// and a glob that must not match hashed entries.
	src := `known_hosts = ["/kh", "/kh2", "/missing"]
[defaults]
allow = ["hashed.example", "x>[hashed.example]:2200", "*.example"]
`
	p := mustParse(t, src, files{"/kh": w.knownHosts, "/kh2": extra})
	tests := []struct {
		name string
		key  ssh.PublicKey
		want string
	}{
		{"plain", w.jump.pub, "[jump.example]"},
		{"comma list", w.db.pub, "[db.internal 10.0.0.5]"},
		{"[host]:port", w.git.pub, "[[git.example]:2222 good.example]"},
		{"negated name dropped", w.git.pub, "[[git.example]:2222 good.example]"},
		{"wildcard line gives its pattern", w.lab.pub, "[*.lab]"},
		{"hashed: only names the policy mentions", w.hashed.pub, "[hashed.example]"},
		{"hashed [host]:port", w.stranger.pub, "[[hashed.example]:2200]"},
		{"[host]:22 is the plain name; names lower-cased", w.other.pub, "[other.example other2.example]"},
		{"revoked key has no names", w.revoked.pub, "[]"},
		{"unknown key", w.evil.pub, "[]"},
		{"CA-certified: principals the CA line covers", w.dbCert, "[web.certified]"},
		{"CA line negation", w.evilCert, "[]"},
		{"user certificate", w.userCert, "[]"},
		{"forged CA signature", w.badCASig, "[]"},
		{"expired certificate: validity not checked for display", w.expiredCert, "[web.certified]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(p.HostNames(tc.key)); got != tc.want {
				t.Errorf("HostNames = %s, want %s", got, tc.want)
			}
		})
	}
	warn := strings.Join(p.Warnings(), "\n")
	for _, want := range []string{
		"known_hosts file /missing does not exist: no host gets a name from it",
		"known_hosts has 3 hashed entries; globs in allow/deny never match them",
	} {
		if !strings.Contains(warn, want) {
			t.Errorf("warnings %q lack %q", warn, want)
		}
	}
}

func TestKnownHostsBadLines(t *testing.T) {
	w := newWorld(t)
	kh := strings.Join([]string{
		w.jump.line("jump.example"),
		"garbage",
		"host ssh-ed25519 !!!notbase64",
		w.db.line("@unknown-marker db.internal"),
		w.db.line("|1|bad|hash"),
		w.db.line("db.internal"),
	}, "\n")
	p := mustParse(t, `known_hosts = ["/kh"]`, files{"/kh": kh})
	if got := fmt.Sprint(p.HostNames(w.db.pub)); got != "[db.internal]" {
		t.Errorf("lines after bad ones not indexed: %s", got)
	}
	warn := p.Warnings()
	want := []string{
		"/kh:2: skipped: not a known_hosts line: want host names, a key type and a key",
		"/kh:3: skipped: bad host key: illegal base64 data at input byte 0",
		"/kh:4: skipped: unknown marker @unknown-marker",
		`/kh:5: skipped: hashed host "|1|bad|hash" has a bad salt or hash`,
	}
	if fmt.Sprintf("%q", warn) != fmt.Sprintf("%q", want) {
		t.Errorf("warnings:\n got %q\nwant %q", warn, want)
	}
}

func TestResolveHost(t *testing.T) {
	w := newWorld(t)
	p := mustParse(t, `known_hosts = ["/kh"]`, files{"/kh": w.knownHosts})
	tests := []struct {
		name string
		want ssh.PublicKey
	}{
		{"jump.example", w.jump.pub},
		{"JUMP.example", w.jump.pub},
		{"10.0.0.5", w.db.pub},
		{"[git.example]:2222", w.git.pub},
		{"hashed.example", w.hashed.pub}, // not in the policy: hashed on demand
		{w.other.fp(), w.other.pub},
		{"nowhere.example", nil},
		{"revoked.example", w.revoked.pub}, // listed, so Decide can refuse it by name
	}
	for _, tc := range tests {
		got := p.ResolveHost(tc.name)
		switch {
		case tc.want == nil && len(got) != 0:
			t.Errorf("ResolveHost(%q) = %d keys, want none", tc.name, len(got))
		case tc.want != nil && (len(got) != 1 || string(got[0].Marshal()) != string(tc.want.Marshal())):
			t.Errorf("ResolveHost(%q) = %v, want one key", tc.name, got)
		}
	}
}
