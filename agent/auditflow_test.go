package agent

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

type afClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *afClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *afClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestForwardedSignatureBudget: through one forwarded origin, allowed
// signatures beyond the budget are refused (each signature needs its own
// record) and counted in one rate-limited record; the budget refills with
// time and local use is never limited.
func TestForwardedSignatureBudget(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "policy.toml")
	os.WriteFile(pf, []byte("known_hosts = []\nunknown_destination = \"allow\"\n[defaults]\nconfirm = \"never\"\n"), 0o600)
	ph, err := NewPolicyHolder(pf, true, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(dir, "audit.jsonl")
	al, err := audit.Open(auditPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	clock := &afClock{t: time.Now()}
	_, sock := ltServer(t, Options{Policy: ph, Audit: al, Now: clock.now})
	priv := ltKey(t)
	user := ltPub(t, priv)
	local := sshagent.NewClient(ltDial(t, sock))
	if err := local.Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	c := sshagent.NewClient(ltDial(t, sock))
	if _, err := c.Extension(extSessionBind, btBind(t, "jump", nil, "user-to-jump", true)); err != nil {
		t.Fatal(err)
	}
	sid := "jump-to-target"
	if _, err := c.Extension(extSessionBind, btBind(t, "target", nil, sid, false)); err != nil {
		t.Fatal(err)
	}
	login := hbLogin(user, []byte(sid), btKey(t, "target").PublicKey())
	signs := func(n int) (ok int, lastErr error) {
		for range n {
			if _, err := c.Sign(user, login); err != nil {
				lastErr = err
			} else {
				ok++
			}
		}
		return ok, lastErr
	}
	if ok, err := signs(signBurst + 10); ok != signBurst {
		t.Fatalf("%d of %d signatures at once, want %d (last error %v)", ok, signBurst+10, signBurst, err)
	}
	if _, err := local.Sign(user, []byte("local data")); err != nil {
		t.Errorf("local use limited by a forwarded flood: %v", err)
	}
	clock.add(time.Second)
	if ok, _ := signs(signRate + 10); ok != signRate {
		t.Errorf("%d signatures a second later, want %d", ok, signRate)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(auditPath)
		log := string(b)
		if strings.Contains(log, `"event":"rate-limited"`) {
			if !strings.Contains(log, "signatures refused by the rate limit") {
				t.Errorf("the rate-limited record does not count the refused signatures")
			}
			if n := strings.Count(log, `"rule":"audit rate limit"`); n < 1 {
				t.Errorf("no record with the rate-limit rule")
			}
			if n := strings.Count(log, `"event":"sign"`); n != signBurst+signRate+1 {
				t.Errorf("%d sign records, want one per signature given (%d) and the local one", n, signBurst+signRate)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no rate-limited record")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
