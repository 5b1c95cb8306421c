package policy

import (
	"fmt"
	"strings"
	"sync"
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

// TestHostNamesFileOrder: hashed hosts are matched only when a key's names
// are first asked for, yet the names come in file order, a line's literal
// names before its hashed ones, each once, as if all were read at load.
func TestHostNamesFileOrder(t *testing.T) {
	w := newWorld(t)
	kh := strings.Join([]string{
		w.jump.line(knownhosts.HashHostname("b.example")),
		w.jump.line("a.example"),
		w.jump.line(knownhosts.HashHostname("c.example") + ",d.example," + knownhosts.HashHostname("b.example")),
		w.jump.line(knownhosts.HashHostname("e.example") + ",!e.example"), // negated on its line
		w.jump.line(knownhosts.HashHostname("unmentioned.example")),
		w.db.line("c.example"),
		w.db.line(knownhosts.HashHostname("a.example")),
	}, "\n")
	src := `known_hosts = ["/kh"]
[defaults]
allow = ["e.example", "d.example", "c.example", "b.example", "a.example"]
`
	p := mustParse(t, src, files{"/kh": kh})
	tests := []struct {
		key  ssh.PublicKey
		want string
	}{
		{w.jump.pub, "[b.example a.example d.example c.example]"},
		{w.db.pub, "[c.example a.example]"},
	}
	for _, tc := range tests {
		for range 2 { // computed, then memoized
			if got := fmt.Sprint(p.HostNames(tc.key)); got != tc.want {
				t.Errorf("HostNames = %s, want %s", got, tc.want)
			}
		}
	}
}

// TestResolveHostOrder: `policy explain` takes the first key ResolveHost
// returns. First come the keys the name was given to (literal names and
// hashed hosts the policy mentions) in the order of the lines that gave
// it, then keys of other hashed hosts with that name, unless revoked.
func TestResolveHostOrder(t *testing.T) {
	w := newWorld(t)
	kh := strings.Join([]string{
		w.db.line("x.example"),
		w.git.line(knownhosts.HashHostname("dest.example")),
		w.jump.line("dest.example"),
		w.db.line("dest.example"),
		w.other.line(knownhosts.HashHostname("other.example")),
		w.lab.line("lab.example"),
		w.lab.line(knownhosts.HashHostname("other.example")),
		w.revoked.line(knownhosts.HashHostname("other.example")),
		w.revoked.line("@revoked *"),
		w.prod.line("other.example"),
	}, "\n")
	p := mustParse(t, "known_hosts = [\"/kh\"]\n[defaults]\nallow = [\"dest.example\"]\n", files{"/kh": kh})
	tests := []struct {
		name string
		want []testKey
	}{
		{"dest.example", []testKey{w.git, w.jump, w.db}},     // a policy name: hashed and plain by line
		{"other.example", []testKey{w.prod, w.other, w.lab}}, // not in the policy: plain first; revoked skipped
		{"OTHER.example", []testKey{w.prod, w.other, w.lab}}, // names are lower-cased
		{w.lab.fp(), []testKey{w.lab}},                       // by fingerprint
		{w.revoked.fp(), []testKey{w.revoked}},               // a revoked key is listed by fingerprint
		{w.evil.fp(), nil},                                   // not in known_hosts
		{"SHA256:not-base64!", nil},                          // not a fingerprint
		{"[x.example]:22", []testKey{w.db}},                  // port 22 is the plain name
		{"nowhere.example", nil},
	}
	for _, tc := range tests {
		var got, want []string
		for _, k := range p.ResolveHost(tc.name) {
			got = append(got, ssh.FingerprintSHA256(k))
		}
		for _, k := range tc.want {
			want = append(want, k.fp())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ResolveHost(%q) = %v, want %v", tc.name, got, want)
		}
	}
}

// TestHostIndexManyKeys: every one of thousands of keys is found by its
// marshaled form and gets its own name; keys not in known_hosts get none
// and are named by their fingerprint.
func TestHostIndexManyKeys(t *testing.T) {
	const n = 3000
	// benchKnownHosts: jumpNN, dbNN, then hostNNNNN.example; odd lines hashed.
	name := func(i int) string {
		switch {
		case i < 10:
			return fmt.Sprintf("jump%02d.example", i)
		case i < 50:
			return fmt.Sprintf("db%02d.internal", i-10)
		}
		return fmt.Sprintf("host%05d.example", i)
	}
	mentioned := func(i int) bool { return i%100 == 51 } // hashed lines the policy names
	var src strings.Builder
	src.WriteString("known_hosts = [\"/kh\"]\n[defaults]\nallow = [\"jump00.example\"")
	for i := range n {
		if mentioned(i) {
			fmt.Fprintf(&src, ", %q", name(i))
		}
	}
	src.WriteString("]\n")
	p := mustParse(t, src.String(), files{"/kh": benchKnownHosts(n)})
	for i := range n {
		want := "[" + name(i) + "]"
		if i%2 == 1 && !mentioned(i) {
			want = "[]"
		}
		if got := fmt.Sprint(p.HostNames(benchKey(i))); got != want {
			t.Fatalf("HostNames(key %d) = %s, want %s", i, got, want)
		}
	}
	if got := fmt.Sprint(p.HostNames(benchKey(n))); got != "[]" {
		t.Errorf("a key not in known_hosts has names %s", got)
	}
	stranger := benchKey(n + 1)
	d := p.Decide(Request{Key: Key{Comment: "k"}, Hops: []Hop{{HostKey: stranger}}})
	if want := "an unnamed host (" + ssh.FingerprintSHA256(stranger) + ")"; !strings.Contains(d.Reason, want) {
		t.Errorf("reason %q does not name the host %q", d.Reason, want)
	}
	if got := p.ResolveHost(ssh.FingerprintSHA256(benchKey(n - 1))); len(got) != 1 || string(got[0].Marshal()) != string(benchKey(n-1).Marshal()) {
		t.Errorf("ResolveHost(fingerprint of the last key) = %v", got)
	}
}

// TestHostNamesConcurrent: the memo of hashed matches is filled by
// concurrent callers (run with -race) and every caller sees the same names.
func TestHostNamesConcurrent(t *testing.T) {
	p := mustParse(t, benchPolicy(), files{"/kh": benchKnownHosts(200)})
	want := make([]string, 50)
	for i := range want {
		switch {
		case i < 10:
			want[i] = fmt.Sprintf("[jump%02d.example]", i)
		default:
			want[i] = fmt.Sprintf("[db%02d.internal]", i-10)
		}
	}
	errs := make(chan string, 8*len(want))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := len(want) - 1; i >= 0; i-- {
				if got := fmt.Sprint(p.HostNames(benchKey(i))); got != want[i] {
					errs <- fmt.Sprintf("HostNames(key %d) = %s, want %s", i, got, want[i])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
