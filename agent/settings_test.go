package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/policy"
)

// A key's own settings reach the identity whichever way it is added: over
// the agent protocol (AddedKeyFor, then identityOf) or from the keystore
// (AddKey). Both go through newIdentity, so both get the default lifetime
// when the key has none.
func TestSettingsReachTheIdentity(t *testing.T) {
	depth := 0
	set := policy.Settings{Confirm: true, Allow: []string{"jump.example"}, Deny: []string{"prod"}, MaxForwardDepth: &depth, Lifetime: 90 * time.Second}
	now := time.Unix(1_700_000_000, 0)
	srv := New(Options{DefaultLifetime: time.Hour, Now: func() time.Time { return now }})
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	check := func(how string, id *identity, want policy.Settings, stored bool, expires time.Time) {
		t.Helper()
		got := id.Settings
		if got.Confirm != want.Confirm || strings.Join(got.Allow, ",") != strings.Join(want.Allow, ",") ||
			strings.Join(got.Deny, ",") != strings.Join(want.Deny, ",") || (got.MaxForwardDepth == nil) != (want.MaxForwardDepth == nil) ||
			got.MaxForwardDepth != nil && *got.MaxForwardDepth != *want.MaxForwardDepth || got.Lifetime != want.Lifetime {
			t.Errorf("%s: settings %+v, want %+v", how, got, want)
		}
		if id.Stored != stored || !id.Expires.Equal(expires) {
			t.Errorf("%s: stored %v, expires %v; want %v, %v", how, id.Stored, id.Expires, stored, expires)
		}
	}

	id, err := srv.identityOf(AddedKeyFor(priv, nil, "k", set, true))
	if err != nil {
		t.Fatal(err)
	}
	check("agent protocol", id, set, true, now.Add(90*time.Second))

	id, err = srv.identityOf(AddedKeyFor(priv, nil, "k", policy.Settings{}, false))
	if err != nil {
		t.Fatal(err)
	}
	check("agent protocol, no lifetime", id, policy.Settings{}, false, now.Add(time.Hour))

	held, err := sealPlain(priv)
	if err != nil {
		t.Fatal(err)
	}
	noLife := set
	noLife.Lifetime = 0
	ki, err := srv.AddKey(held, "k", noLife)
	if err != nil {
		t.Fatal(err)
	}
	id, _ = srv.keys.get([]byte(held.PublicKey().Marshal()), now)
	check("keystore", id, noLife, true, now.Add(time.Hour))
	if got := ki.Settings(); !got.Confirm || got.Allow[0] != "jump.example" || *got.MaxForwardDepth != 0 {
		t.Errorf("KeyInfo.Settings = %+v", got)
	}

	bad := set
	bad.Allow = []string{" "}
	if _, err := srv.identityOf(AddedKeyFor(priv, nil, "k", bad, false)); err == nil || !strings.HasPrefix(err.Error(), "key settings: ") {
		t.Errorf("an empty allow entry: err = %v, want key settings: …", err)
	}
}
