package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// Audit into the user's log pipeline: a real journald (started for the
// test when none runs; these machines have no systemd as PID 1), read back
// with journalctl as an administrator would.

const (
	journalDir    = "/run/systemd/journal"
	journalSocket = journalDir + "/socket"
	journalDevLog = journalDir + "/dev-log"
)

// needJournald makes sure a journald listens, starting
// /lib/systemd/systemd-journald when none does and stopping it (and
// removing its sockets) after the test.
func needJournald(t *testing.T) {
	t.Helper()
	need(t, "journalctl", "systemd")
	if c, err := net.Dial("unixgram", journalSocket); err == nil {
		c.Close()
		return
	}
	needRoot(t, "start systemd-journald")
	bin := need(t, "/lib/systemd/systemd-journald", "systemd")
	for _, s := range []string{"socket", "stdout", "dev-log", "io.systemd.journal", "kernel-seqnum"} {
		os.Remove(filepath.Join(journalDir, s)) // stale, from a journald that is gone
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start journald: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		for _, s := range []string{"socket", "stdout", "dev-log", "io.systemd.journal", "kernel-seqnum"} {
			os.Remove(filepath.Join(journalDir, s))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unixgram", journalSocket); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("journald did not open its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// journalEntries reads the agent's entries (by its pid) for a match such
// as SAFE_AGENT_SEQ=5, waiting up to a few seconds for them to arrive.
func journalEntries(t *testing.T, pid int, match string, want int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("journalctl", "-o", "json", "--no-pager", "_PID="+strconv.Itoa(pid), match).Output()
		if err != nil {
			t.Fatalf("journalctl: %v", err)
		}
		var entries []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("journalctl -o json: %v: %s", err, sc.Bytes())
			}
			entries = append(entries, e)
		}
		if len(entries) >= want || time.Now().After(deadline) {
			return entries
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// auditLines maps seq to the record and its exact line in the file.
func auditLines(t *testing.T, path string) map[uint64]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint64]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		r, err := audit.ParseRecord([]byte(line))
		if err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		m[r.Seq] = line
	}
	return m
}

func lastRecord(t *testing.T, path, event string) audit.Record {
	t.Helper()
	var last audit.Record
	for _, r := range readAudit(t, path) {
		if r.Event == event {
			last = r
		}
	}
	if last.Event == "" {
		t.Fatalf("no %s record in the audit log", event)
	}
	return last
}

// reloadPolicy rewrites the agent's policy file and waits until the agent
// has loaded it (a new policy-load record).
func reloadPolicy(t *testing.T, a *agentProc, policy string) {
	t.Helper()
	count := func() int {
		n := 0
		for _, r := range readAudit(t, a.Audit) {
			if r.Event == audit.EventPolicyLoad {
				n++
			}
		}
		return n
	}
	before := count()
	pf := filepath.Join(filepath.Dir(a.Home), "config", "policy.toml")
	if err := os.WriteFile(pf, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for count() == before {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not reload its policy; stderr:\n%s", a.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mirrorSigner is an agent with one key and ssh-keygen -Y sign through it.
type mirrorSigner struct {
	a   *agentProc
	pub string
	msg string
	fp  string
}

func newMirrorSigner(t *testing.T, policy string) *mirrorSigner {
	t.Helper()
	a := startAgent(t, agentOpts{policy: policy})
	dir := t.TempDir()
	k := newKey(t, dir, "mirrorkey", "ed25519", 0)
	a.mustRun("ssh-add", k)
	os.Remove(k)
	fp := strings.Fields(a.mustRun("ssh-keygen", "-lf", k+".pub"))[1]
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("hello"), 0o600)
	return &mirrorSigner{a: a, pub: k + ".pub", msg: msg, fp: fp}
}

func (s *mirrorSigner) sign(t *testing.T, ns string) (audit.Record, bool) {
	t.Helper()
	os.Remove(s.msg + ".sig")
	_, code := s.a.run("ssh-keygen", "-Y", "sign", "-f", s.pub, "-n", ns, s.msg)
	return lastRecord(t, s.a.Audit, audit.EventSign), code == 0
}

const mirrorPolicyBody = "known_hosts = []\n[defaults]\nnamespaces = [\"git\"]\n"

func TestAuditMirrorToJournal(t *testing.T) {
	needJournald(t)
	s := newMirrorSigner(t, "audit_mirror = \"journal\"\n"+mirrorPolicyBody)
	pid := s.a.cmd.Process.Pid

	allowed, ok := s.sign(t, "git")
	if !ok || allowed.Decision != audit.DecisionAllowed {
		t.Fatalf("git signature: ok=%v %s", ok, describe(allowed))
	}
	denied, ok := s.sign(t, "file")
	if ok || denied.Decision != audit.DecisionDenied {
		t.Fatalf("file signature: ok=%v %s", ok, describe(denied))
	}
	lines := auditLines(t, s.a.Audit)

	for _, tc := range []struct {
		r        audit.Record
		priority string
	}{{allowed, "6"}, {denied, "4"}} {
		entries := journalEntries(t, pid, fmt.Sprintf("SAFE_AGENT_SEQ=%d", tc.r.Seq), 1)
		if len(entries) != 1 {
			t.Fatalf("seq %d: %d journal entries, want 1", tc.r.Seq, len(entries))
		}
		e := entries[0]
		want := map[string]string{
			"SAFE_AGENT_EVENT":    "sign",
			"SAFE_AGENT_DECISION": tc.r.Decision,
			"SAFE_AGENT_KEY_FP":   s.fp,
			"SAFE_AGENT_PATH":     "here",
			"SAFE_AGENT_RULE":     tc.r.Rule,
			"SAFE_AGENT_PURPOSE":  "sign " + tc.r.Purpose.Namespace,
			"SAFE_AGENT_RECORD":   lines[tc.r.Seq], // the exact line of the hash-chained file
			"PRIORITY":            tc.priority,
			"SYSLOG_IDENTIFIER":   "safe-agent",
		}
		for k, v := range want {
			if got, _ := e[k].(string); got != v {
				t.Errorf("seq %d: %s = %q, want %q", tc.r.Seq, k, got, v)
			}
		}
		msg, _ := e["MESSAGE"].(string)
		wantMsg := fmt.Sprintf("#%d sign %s: key mirrorkey (%s), sign %s, here, rule ", tc.r.Seq, tc.r.Decision, s.fp, tc.r.Purpose.Namespace)
		if !strings.HasPrefix(msg, wantMsg) || strings.Contains(msg, "\n") {
			t.Errorf("MESSAGE = %q, want one line starting %q", msg, wantMsg)
		}
	}
	// The first policy-load, written before the policy was known, is
	// mirrored too.
	if e := journalEntries(t, pid, "SAFE_AGENT_EVENT=policy-load", 1); len(e) != 1 {
		t.Errorf("%d policy-load entries in the journal, want 1", len(e))
	}

	// A reload to "none" stops the copies from the next record on.
	reloadPolicy(t, s.a, "audit_mirror = \"none\"\n"+mirrorPolicyBody+"# off\n")
	quiet, _ := s.sign(t, "git")
	time.Sleep(500 * time.Millisecond)
	if e := journalEntries(t, pid, fmt.Sprintf("SAFE_AGENT_SEQ=%d", quiet.Seq), 0); len(e) != 0 {
		t.Errorf("record %d mirrored after audit_mirror = \"none\"", quiet.Seq)
	}
	if e := journalEntries(t, pid, "SAFE_AGENT_EVENT=policy-load", 2); len(e) != 1 {
		t.Errorf("%d policy-load entries, want 1 (the reload to none is not mirrored)", len(e))
	}
}

// TestAuditMirrorSyslog: syslog to /dev/log, here journald's syslog
// socket. While /dev/log is missing the mirror fails: logged once, and
// every request is served as before.
func TestAuditMirrorSyslog(t *testing.T) {
	needJournald(t)
	if _, err := os.Lstat("/dev/log"); err == nil {
		t.Skip("/dev/log exists: the failure half of this test needs it missing")
	}
	s := newMirrorSigner(t, "audit_mirror = \"syslog\"\n"+mirrorPolicyBody)
	for range 3 {
		if r, ok := s.sign(t, "git"); !ok || r.Decision != audit.DecisionAllowed {
			t.Fatalf("signature refused while the syslog mirror fails: %s", describe(r))
		}
	}
	time.Sleep(300 * time.Millisecond)
	logs := s.a.stderr.String()
	if n := strings.Count(logs, "audit mirror failed"); n != 1 {
		t.Errorf("mirror failure logged %d times, want once (rate-limited):\n%s", n, logs)
	}
	if !strings.Contains(logs, "syslog") {
		t.Errorf("the failure does not say syslog:\n%s", logs)
	}

	// With /dev/log (as systemd links it to journald), a fresh agent's
	// records arrive as syslog lines: summary, then the record's JSON.
	if err := os.Symlink(journalDevLog, "/dev/log"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove("/dev/log") })
	s2 := newMirrorSigner(t, "audit_mirror = \"syslog\"\n"+mirrorPolicyBody)
	denied, ok := s2.sign(t, "file")
	if ok {
		t.Fatal("file signature allowed")
	}
	line := auditLines(t, s2.a.Audit)[denied.Seq]
	entries := journalEntries(t, s2.a.cmd.Process.Pid, "SYSLOG_IDENTIFIER=safe-agent", 4)
	var found map[string]any
	for _, e := range entries {
		if m, _ := e["MESSAGE"].(string); strings.HasPrefix(m, fmt.Sprintf("#%d sign denied", denied.Seq)) {
			found = e
		}
	}
	if found == nil {
		t.Fatalf("no syslog entry for seq %d among %d", denied.Seq, len(entries))
	}
	if m := found["MESSAGE"].(string); !strings.HasSuffix(m, " "+line) {
		t.Errorf("syslog message does not end with the audit line:\n%s\n%s", m, line)
	}
	// authpriv (10), warning (4).
	if found["SYSLOG_FACILITY"] != "10" || found["PRIORITY"] != "4" {
		t.Errorf("facility %v priority %v, want authpriv (10) and warning (4)", found["SYSLOG_FACILITY"], found["PRIORITY"])
	}
}
