package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/policy"
)

// TestWatchKnownHosts: a new @revoked line in a known_hosts file the
// policy reads applies without SIGHUP.
func TestWatchKnownHosts(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	jump := btKey(t, "jump").PublicKey()
	line := string(ssh.MarshalAuthorizedKey(jump))
	if err := os.WriteFile(kh, []byte("jump "+line), 0o600); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "policy.toml")
	os.WriteFile(pf, []byte(fmt.Sprintf("known_hosts = [%q]\n[defaults]\nconfirm = \"never\"\n", kh)), 0o600)
	ph, err := NewPolicyHolder(pf, true, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := policy.Request{Key: policy.Key{Comment: "k"}, Hops: []policy.Hop{{HostKey: jump}}}
	if d := ph.Get().Decide(req); d.Verdict != policy.Allow {
		t.Fatalf("before: %v %s", d.Verdict, d.Reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ph.Watch(ctx, 20*time.Millisecond)
	// Same size and (maybe) the same second: the stamp must still change.
	f, err := os.OpenFile(kh, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "@revoked * %s", line)
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := ph.Get().Decide(req)
		if d.Verdict == policy.Deny && d.Rule == "known_hosts @revoked" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the @revoked line was not applied: %v by %q", d.Verdict, d.Rule)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
