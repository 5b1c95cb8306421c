package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAskpass is an askpass program that logs each prompt and answers
// from a file: "yes", "no", "hang" or "crash", after an optional delay.
type fakeAskpass struct {
	t    *testing.T
	dir  string
	Path string
}

func newFakeAskpass(t *testing.T) *fakeAskpass {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	f := &fakeAskpass{t: t, dir: dir, Path: filepath.Join(dir, "askpass")}
	script := fmt.Sprintf(`#!/bin/sh
d=%s
echo "start $(date +%%s.%%N) $$ mode=$SSH_ASKPASS_PROMPT" >> $d/calls
printf '%%s\n=====\n' "$1" >> $d/prompts
sleep $(cat $d/delay 2>/dev/null || echo 0)
ans=$(cat $d/answer)
echo "end $(date +%%s.%%N) $$" >> $d/calls
case "$ans" in
yes) exit 0 ;;
no) exit 1 ;;
hang) echo $$ > $d/hang.pid; exec sleep 60 ;;
crash) kill -SEGV $$ ;;
esac
`, dir)
	if err := os.WriteFile(f.Path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f.answer("no")
	return f
}

func (f *fakeAskpass) answer(a string) {
	os.WriteFile(filepath.Join(f.dir, "answer"), []byte(a), 0o644)
}
func (f *fakeAskpass) delay(s string) { os.WriteFile(filepath.Join(f.dir, "delay"), []byte(s), 0o644) }

func (f *fakeAskpass) prompts() []string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "prompts"))
	var out []string
	for _, p := range strings.Split(string(b), "\n=====\n") {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

// intervals are the [start, end] times of each prompt.
func (f *fakeAskpass) intervals() [][2]float64 {
	b, _ := os.ReadFile(filepath.Join(f.dir, "calls"))
	starts := map[string]float64{}
	var out [][2]float64
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 3 {
			continue
		}
		ts, _ := strconv.ParseFloat(fs[1], 64)
		if fs[0] == "start" {
			starts[fs[2]] = ts
		} else if fs[0] == "end" {
			out = append(out, [2]float64{starts[fs[2]], ts})
		}
	}
	return out
}

// signSetup is an agent with one key whose use needs confirmation, and
// ssh-keygen -Y sign through it.
type signSetup struct {
	a   *agentProc
	pub string
	dir string
}

func newSignSetup(t *testing.T, policy string) *signSetup {
	a := startAgent(t, agentOpts{policy: policy})
	dir := t.TempDir()
	k := newKey(t, dir, "work", "ed25519", 0)
	a.mustRun("ssh-add", k)
	os.Remove(k)
	return &signSetup{a: a, pub: k + ".pub", dir: dir}
}

func (s *signSetup) sign(t *testing.T, ns, name string) bool {
	msg := filepath.Join(s.dir, name)
	os.WriteFile(msg, []byte(name), 0o644)
	_, code := s.a.run("ssh-keygen", "-Y", "sign", "-f", s.pub, "-n", ns, msg)
	return code == 0
}

func promptPolicy(askpass string, extra string) string {
	return fmt.Sprintf("prompt = %q\nconfirm_timeout = \"2s\"\n[defaults]\nconfirm = \"always\"\n%s", askpass, extra)
}

func TestPromptFakeAskpass(t *testing.T) {
	f := newFakeAskpass(t)
	s := newSignSetup(t, promptPolicy(f.Path, ""))
	f.answer("yes")
	if !s.sign(t, "file", "m1") {
		t.Fatalf("a yes did not sign:\n%s", s.a.stderr.String())
	}
	p := f.prompts()
	if len(p) != 1 {
		t.Fatalf("%d prompts, want 1", len(p))
	}
	for _, want := range []string{`"work"`, "SHA256:", "sign a file", "Path: here", "ssh-keygen ("} {
		if !strings.Contains(p[0], want) {
			t.Errorf("prompt lacks %q:\n%s", want, p[0])
		}
	}
	calls, _ := os.ReadFile(filepath.Join(f.dir, "calls"))
	if !strings.Contains(string(calls), "mode=confirm") {
		t.Errorf("SSH_ASKPASS_PROMPT=confirm not set: %s", calls)
	}
	f.answer("no")
	if s.sign(t, "file", "m2") {
		t.Error("a no signed")
	}
	f.answer("crash")
	if s.sign(t, "file", "m3") {
		t.Error("a crashed prompt signed")
	}
	f.answer("hang")
	start := time.Now()
	if s.sign(t, "file", "m4") {
		t.Error("a hung prompt signed")
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("hung prompt refused after %v; confirm_timeout is 2s", d)
	}
	pidb, _ := os.ReadFile(filepath.Join(f.dir, "hang.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidb)))
	if pid == 0 {
		t.Fatal("hanging prompt did not run")
	}
	deadline := time.Now().Add(3 * time.Second)
	for pidAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pidAlive(pid) {
		t.Errorf("prompt process %d still running after the deadline", pid)
	}
	// The audit log says what was asked and answered.
	var outcomes []string
	for _, r := range readAudit(t, s.a.Audit) {
		if r.Event == "sign" && r.Prompt != nil {
			outcomes = append(outcomes, r.Decision+":"+r.Prompt.Outcome)
		}
	}
	if got := strings.Join(outcomes, " "); got != "allowed:yes denied:no denied:error denied:timeout" {
		t.Errorf("audit prompt outcomes: %s", got)
	}
}

func TestPromptConcurrency(t *testing.T) {
	f := newFakeAskpass(t)
	s := newSignSetup(t, promptPolicy(f.Path, "remember = \"3s\"\n"))
	f.answer("yes")
	f.delay("1")
	// 4 identical requests at once: one prompt, all signed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if s.sign(t, "file", fmt.Sprintf("c%d", i)) {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if n := len(f.prompts()); n != 1 || ok != 4 {
		t.Fatalf("4 identical requests: %d prompts, %d signed; want 1 and 4", n, ok)
	}
	// Remembered: no prompt for the same request again.
	if !s.sign(t, "file", "again") || len(f.prompts()) != 1 {
		t.Fatalf("remembered yes still prompted (%d prompts)", len(f.prompts()))
	}
	// Two different requests: two prompts, one after the other.
	wg.Add(2)
	for _, ns := range []string{"git", "other-ns"} {
		go func(ns string) {
			defer wg.Done()
			s.sign(t, ns, "d-"+ns)
		}(ns)
	}
	wg.Wait()
	iv := f.intervals()
	if len(iv) != 3 {
		t.Fatalf("%d prompts after two different requests, want 3 in all", len(iv))
	}
	a, b := iv[1], iv[2]
	if a[0] < b[1] && b[0] < a[1] {
		t.Errorf("two prompts overlapped: %v and %v", a, b)
	}
	// After the remembered yes expires, the person is asked again.
	time.Sleep(3200 * time.Millisecond)
	f.delay("0")
	if !s.sign(t, "file", "after-expiry") || len(f.prompts()) != 4 {
		t.Errorf("expired remembered yes: %d prompts, want 4", len(f.prompts()))
	}
	// safe-agent forget clears remembered answers.
	out := s.a.mustRun(agentBin(), "forget")
	if !strings.Contains(out, "Forgot 1 remembered") {
		t.Errorf("forget: %q", out)
	}
	s.sign(t, "file", "after-forget")
	if len(f.prompts()) != 5 {
		t.Errorf("after forget: %d prompts, want 5", len(f.prompts()))
	}
}

func TestPromptForwardedLogin(t *testing.T) {
	f := newFakeAskpass(t)
	n := newSSHNet(t, "jump", "target")
	a := startAgent(t, agentOpts{policy: n.policy(fmt.Sprintf("prompt = %q\n[defaults]\nconfirm = \"forwarded\"\n", f.Path))})
	k := newKey(t, t.TempDir(), "fwd", "ed25519", 0)
	n.authorize(k + ".pub")
	a.mustRun("ssh-add", k)
	os.Remove(k)
	f.answer("yes")
	// A direct login needs no prompt.
	if out, code := n.ssh(a, "jump", "true"); code != 0 {
		t.Fatalf("direct login: %s", out)
	}
	if len(f.prompts()) != 0 {
		t.Fatalf("direct login prompted")
	}
	out, code := n.ssh(a, "-A", "jump", n.sshCmd("target", "echo", "reached"))
	if code != 0 || !strings.Contains(out, "reached") {
		t.Fatalf("forwarded login with a yes: exit %d\n%s", code, out)
	}
	p := f.prompts()
	if len(p) != 1 || !strings.Contains(p[0], "here → jump (forwarded) → target") || !strings.Contains(p[0], "log in as "+currentUser(t)+" on target") {
		t.Fatalf("prompt text:\n%s", strings.Join(p, "\n---\n"))
	}
	f.answer("no")
	if out, code := n.ssh(a, "-A", "jump", n.sshCmd("target", "echo", "reached")); code == 0 {
		t.Fatalf("forwarded login with a no succeeded:\n%s", out)
	}
}
