package policy

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fuzzRequests runs every entry point over p with a few of the world's
// hosts (kept small: a slow body starves the fuzzer).
func fuzzRequests(t *testing.T, p *Policy, w *world, extra []ssh.PublicKey) {
	keys := append([]ssh.PublicKey{w.jump.pub, w.lab.pub, w.hashed.pub, w.dbCert, nil}, extra...)
	now := time.Unix(1_700_000_000, 0)
	clients := []*Client{nil,
		{Chain: []Proc{{PID: 3, Name: "ssh", Exe: "/usr/bin/ssh"}, {PID: 2, Name: "git", Exe: "/usr/bin/git"}, {PID: 1, Name: "claude", Exe: "/usr/bin/node"}}},
		{Chain: []Proc{{PID: 3, Name: "ssh"}}, Unit: "cron.service", Cgroup: "/safe-agent-test-1", Container: "docker"},
		{Unreadable: "process gone"},
	}
	for i, k := range []Key{{Comment: "work-1"}, {Comment: "chain"}, {Fingerprint: w.userKey.fp()}} {
		for j, a := range keys {
			b := keys[(i+j)%len(keys)]
			hops := []Hop{{HostKey: b, Forwarded: true}, {HostKey: a}}
			purpose := Purpose(j % 3)
			c := clients[(i+j)%len(clients)]
			d := p.Decide(Request{Key: k, Hops: hops, Purpose: purpose, Namespace: "git", Now: now, BindFailed: j == 1, Client: c})
			if d.Reason == "" || d.Rule == "" {
				t.Fatalf("decision without rule or reason: %+v", d)
			}
			p.Visible(Request{Key: k, Hops: hops[:1], Now: now, Client: c})
			if i == 0 {
				p.HostNames(a)
			}
		}
	}
	p.Summary()
}

func FuzzParsePolicy(f *testing.F) {
	w := newWorld(f)
	for _, s := range []string{
		decidePolicy(w, "confirm"),
		"",
		"known_hosts = [\"/kh\"]\n[defaults]\nallow = [\"jump.example>db.internal\", \"*.lab\"]\n",
		"key = [{match = \"a\", allow = [\"x\"]}]\n",
		"[[key]]\nmatch = \"b\"\nalow = []\n[[key.sub]]\nx = 1\n",
		"defaults.remember = '''\n5m'''\n",
		"a = \"\"\"\nmulti\n\"\"\"\n[[key]]\nmatch = 'x'\nconfirm = \"x\"",
		"[defaults\n",
		"\"quoted key\" = 1\n[\"key\"]\n",
		"[defaults]\nclients = [\"git\", \"/usr/bin/ssh\", \"unit:cron.service\"]\n[[key]]\nmatch = \"chain\"\nclients = [\"cgroup:/safe-agent-test-*\", \"container:*\"]\n",
		"[[client]]\nname = \"assistants\"\nmatch = [\"claude*\", \"codex\"]\nallow = [\"jump.example\"]\nconfirm = \"always\"\nremember = \"1m\"\nnamespaces = [\"git\"]\n",
		"[[client]]\nmatch = \"container:docker\"\nkeys = [\"work-*\", \"principal:a*\"]\nmax_forward_depth = 0\ndeny = [\"*.lab\"]\n[[client]]\nmatch = []\n",
	} {
		f.Add([]byte(s))
	}
	fsys := files{"/kh": w.knownHosts}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("/etc/policy.toml", data, fsys.read)
		if err != nil {
			var fe FileErrors
			if !errors.As(err, &fe) || len(fe) == 0 {
				t.Fatalf("error without a position: %v", err)
			}
			for _, e := range fe {
				if e.Line < 1 || e.Col < 1 {
					t.Fatalf("bad position in %v", e)
				}
			}
			return
		}
		fuzzRequests(t, p, w, nil)
	})
}

func FuzzKnownHosts(f *testing.F) {
	w := newWorld(f)
	f.Add([]byte(w.knownHosts))
	f.Add([]byte(w.jump.line("a,!b,[c]:22,*.d,|1|AAAA|BBBB")))
	f.Add([]byte(w.ca.line("@cert-authority |1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|aGFzaGhhc2hoYXNoaGFzaGhhc2g=,*.x")))
	f.Add([]byte("\n\n# comment\n@revoked\n"))
	f.Add([]byte(w.certified.line("@revoked web.certified") + "\n" + w.ca.line("@cert-authority web.certified") + "\n" +
		"[web.certified]:2200 " + string(ssh.MarshalAuthorizedKey(w.dbCert))))
	src := `known_hosts = ["/kh"]
[defaults]
allow = ["hashed.example", "web.certified", "*.lab", "jump.example>db.internal"]
deny = ["secret.lab"]
`
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("/etc/policy.toml", []byte(src), files{"/kh": string(data)}.read)
		if err != nil {
			t.Fatalf("a bad known_hosts file must not fail the policy: %v", err)
		}
		var extra []ssh.PublicKey
		for i := range int32(min(p.index.count(), 4)) {
			k, err := p.index.key(i)
			if err != nil {
				t.Fatalf("indexed key %d does not parse: %v", i, err)
			}
			extra = append(extra, k)
		}
		for _, n := range []string{"hashed.example", "a", "[c]:22"} {
			p.ResolveHost(n)
		}
		fuzzRequests(t, p, w, extra)
	})
}
