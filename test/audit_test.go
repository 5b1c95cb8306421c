package test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

func readAudit(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		r, err := audit.ParseRecord(sc.Bytes())
		if err != nil {
			continue // a torn tail after kill -9
		}
		out = append(out, r)
	}
	return out
}

// describe is a record as a test compares it.
func describe(r audit.Record) string {
	s := r.Event + " " + r.Decision
	if r.Purpose != nil {
		s += " " + r.Purpose.Kind
		if r.Purpose.User != "" {
			s += " as " + r.Purpose.User
		}
	}
	if len(r.Path) > 0 {
		var hops []string
		for _, h := range r.Path {
			name := h.Fingerprint
			if len(h.Names) > 0 {
				name = h.Names[0]
			}
			if h.Forwarded {
				name += "(fwd)"
			}
			hops = append(hops, name)
		}
		s += " path=" + strings.Join(hops, ">")
	}
	if r.Rule != "" {
		s += " rule=" + r.Rule
	}
	return s
}

func TestAuditRealSession(t *testing.T) {
	s := newDestSetup(t, `[defaults]
confirm = "never"
[[key]]
match = "user"
allow = ["jump", "jump>target"]
`)
	s.mustReach("jump")
	s.mustReach("jump", "target")
	s.mustNotReach("target")
	user := currentUser(t)
	var got []string
	for _, r := range readAudit(t, s.a.Audit) {
		if r.Event == "header" || r.Event == "start" || r.Event == "policy-load" {
			continue
		}
		got = append(got, describe(r))
		if r.Event == "sign" {
			if r.Key == nil || r.Key.Comment != "user" || !strings.HasPrefix(r.Key.Fingerprint, "SHA256:") {
				t.Errorf("sign record key: %+v", r.Key)
			}
			if r.Client == nil || !strings.HasPrefix(r.Client.Chain, "ssh (") || r.Client.PID == 0 {
				t.Errorf("sign record client: %+v", r.Client)
			}
			if r.Purpose == nil || len(r.Purpose.DataSHA256) != 64 {
				t.Errorf("sign record purpose: %+v", r.Purpose)
			}
		}
	}
	want := []string{
		"add allowed",
		`sign allowed login as ` + user + ` path=jump rule=key "user" allow[0]`,
		`sign allowed login as ` + user + ` path=jump rule=key "user" allow[0]`,
		"list allowed path=jump(fwd)>target",
		`sign allowed login as ` + user + ` path=jump(fwd)>target rule=key "user" allow[1]`,
		`sign denied login as ` + user + ` path=target rule=key "user" allow`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	out, code := runEnv(t, s.a.env(), "", agentBin(), "audit", "verify", "--audit-log", s.a.Audit)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify: exit %d %q", code, out)
	}
	out, code = runEnv(t, s.a.env(), "", agentBin(), "audit", "--audit-log", s.a.Audit, "--decision", "denied")
	if code != 0 || !strings.Contains(out, "target") || !strings.Contains(out, "denied") {
		t.Errorf("audit table of refusals: exit %d\n%s", code, out)
	}
}

// Every signature a client received has its record, even when the agent
// is killed with SIGKILL in the middle of a storm of requests.
func TestAuditSurvivesKill9(t *testing.T) {
	a := startAgent(t, agentOpts{})
	a.mustRun("ssh-add", newKey(t, t.TempDir(), "k", "ed25519", 0))
	const clients, total = 8, 10000
	var (
		mu       sync.Mutex
		received []string
		count    atomic.Int64
		wg       sync.WaitGroup
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, err := net.Dial("unix", a.Socket)
			if err != nil {
				return
			}
			defer conn.Close()
			ag := sshagent.NewClient(conn)
			keys, err := ag.List()
			if err != nil || len(keys) == 0 {
				return
			}
			for i := 0; i < total/clients; i++ {
				data := []byte(fmt.Sprintf("client %d request %d", c, i))
				if _, err := ag.Sign(keys[0], data); err != nil {
					return // the agent died
				}
				sum := sha256.Sum256(data)
				mu.Lock()
				received = append(received, hex.EncodeToString(sum[:]))
				mu.Unlock()
				count.Add(1)
			}
		}(c)
	}
	for count.Load() < total/3 {
		time.Sleep(time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	<-a.done
	if len(received) == 0 || len(received) == total {
		t.Fatalf("kill -9 did not land mid-run (%d of %d signatures)", len(received), total)
	}
	logged := map[string]bool{}
	for _, r := range readAudit(t, a.Audit) {
		if r.Event == "sign" && r.Decision == "allowed" && r.Purpose != nil {
			logged[r.Purpose.DataSHA256] = true
		}
	}
	missing := 0
	for _, h := range received {
		if !logged[h] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d signatures handed out have no audit record", missing, len(received))
	}
	out, code := runEnv(t, a.env(), "", agentBin(), "audit", "verify", "--audit-log", a.Audit)
	if code != 0 {
		t.Fatalf("audit verify after kill -9: exit %d\n%s", code, out)
	}
	t.Logf("%d signatures before kill -9, all recorded; verify: %s", len(received), strings.TrimSpace(out))
}

func TestAuditLogNotWritable(t *testing.T) {
	needDevFull(t)
	dir := shortTempDir(t)
	logPath := filepath.Join(dir, "full.jsonl")
	if err := os.Symlink("/dev/full", logPath); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, agentOpts{args: []string{"--audit-log", logPath}})
	k := newKey(t, t.TempDir(), "k", "ed25519", 0)
	a.mustRun("ssh-add", k)
	// Lists still work.
	if out := a.mustRun("ssh-add", "-l"); !strings.Contains(out, "ED25519") {
		t.Fatalf("list with a full audit disk: %s", out)
	}
	// Signatures are refused, with the reason in the log.
	c := sshagent.NewClient(a.rawConn())
	keys, _ := c.List()
	if _, err := c.Sign(keys[0], []byte("data")); err == nil {
		t.Fatal("signed without an audit record")
	}
	waitLog(t, a, "no signature without a record")
	if !strings.Contains(a.stderr.String(), "no space left on device") {
		t.Errorf("log does not say why:\n%s", a.stderr.String())
	}
}
