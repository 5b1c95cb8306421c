package agent

import (
	"crypto/ed25519"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// TestAskReason: each cause for asking, decided by the real policy engine,
// reads as a plain sentence on the prompt.
func TestAskReason(t *testing.T) {
	src := `known_hosts = ["/kh"]
unknown_destination = "confirm"
[defaults]
confirm = "forwarded"
[[key]]
match = "always-*"
confirm = "always"
[[key]]
match = "plain"
confirm = "never"
`
	hostKey := func(seed byte) ssh.PublicKey {
		s := make([]byte, 32)
		s[0] = seed
		pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	known, unknown := hostKey(1), hostKey(2)
	kh := "db.internal " + string(ssh.MarshalAuthorizedKey(known))
	p, err := policy.Parse("test.toml", []byte(src), func(string) ([]byte, error) { return []byte(kh), nil })
	if err != nil {
		t.Fatal(err)
	}
	local := []policy.Hop{{HostKey: known}}
	forwarded := []policy.Hop{{HostKey: known, Forwarded: true}, {HostKey: known}}
	toUnknown := []policy.Hop{{HostKey: known, Forwarded: true}, {HostKey: unknown}}
	for _, tc := range []struct {
		name    string
		comment string
		confirm bool
		hops    []policy.Hop
		want    string
	}{
		{"stored confirm", "plain", true, local, "you added this key with --confirm (or ssh-add -c)"},
		{"section always", "always-x", false, local, `the policy asks for every use ([[key]] match "always-*": confirm = "always")`},
		{"defaults forwarded", "other", false, forwarded, `the policy asks for every use through a forwarded agent ([defaults]: confirm = "forwarded")`},
		{"unknown destination", "plain", false, toUnknown, `the destination is not known (unknown_destination = "confirm")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(policy.Request{Key: policy.Key{Comment: tc.comment, Fingerprint: "SHA256:x"}, Settings: policy.Settings{Confirm: tc.confirm},
				Hops: tc.hops, Purpose: policy.PurposeLogin, Now: time.Now()})
			if d.Verdict != policy.Confirm {
				t.Fatalf("verdict %v (%s: %s), want confirm", d.Verdict, d.Rule, d.Reason)
			}
			if got := askReason(d); got != tc.want {
				t.Errorf("askReason(rule %q) = %q, want %q", d.Rule, got, tc.want)
			}
		})
	}
	if got := askReason(policy.Decision{Verdict: policy.Confirm, Rule: "something new"}); got != "policy rule something new" {
		t.Errorf("unknown rule: %q", got)
	}
}
