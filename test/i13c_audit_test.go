package test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// ptySized runs a program on a new pseudo-terminal of cols×rows as its
// stdin, stdout and stderr, and returns everything it printed (with the
// terminal's \r\n line ends) and its exit status.
func ptySized(t *testing.T, env []string, cols, rows int, name string, args ...string) (string, int) {
	t.Helper()
	master, slave := openPTY(t)
	defer master.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)}); err != nil {
		t.Fatalf("set the terminal's size: %v", err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	shown := newSyncBuffer()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(shown, master) // ends with EIO once the program has exited
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s %v did not finish on the terminal:\n%s", name, args, shown.String())
	}
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
	}
	return shown.String(), cmd.ProcessState.ExitCode()
}

var ansiSGR = regexp.MustCompile("\x1b\\[[0-9;]*m")

// screenLines are the lines a terminal shows, colours taken out.
func screenLines(out string) []string {
	out = strings.TrimRight(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
	return strings.Split(ansiSGR.ReplaceAllString(out, ""), "\n")
}

// deepChainRecord is a forwarded login asked for by ssh deep in a process
// tree, through two jump hosts.
func deepChainRecord(t0 time.Time) audit.Record {
	return audit.Record{Time: t0, Event: audit.EventSign, Decision: audit.DecisionAllowed,
		Rule: `key "work-*" allow jump.example>*.internal`, Reason: "confirmed",
		Key:     &audit.Key{Fingerprint: "SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo", Type: "ssh-ed25519", Comment: "work-laptop"},
		Purpose: &audit.Purpose{Kind: audit.PurposeLogin, User: "deploy"},
		Path: []audit.Hop{
			{Names: []string{"bastion.example.com"}, Fingerprint: "SHA256:bastion", Forwarded: true},
			{Names: []string{"jump.example.com"}, Fingerprint: "SHA256:jump", Forwarded: true},
			{Names: []string{"db.internal"}, Fingerprint: "SHA256:db"},
		},
		Client: &audit.Client{PID: 4194301, UID: 1000, Exe: "/usr/bin/ssh",
			Chain: "ssh (4194301) ← git (4194300) ← bash (123456) ← tmux: server (2345) ← systemd (1001) ← systemd (1)"},
		Prompt: &audit.Prompt{Outcome: audit.PromptYes, WaitMS: 2340}}
}

// auditSession makes an audit log the way a user gets one: a real agent,
// an allowed git signature and a refused npm one (namespaces = ["git"])
// from ssh-keygen under two shells, then a forwarded login record from a
// deep process tree appended after the agent stopped.
func auditSession(t *testing.T) (*agentProc, string) {
	t.Helper()
	a := startAgent(t, agentOpts{policy: "[defaults]\nnamespaces = [\"git\"]\n"})
	key := newKey(t, a.Home, "work-laptop", "ed25519", 0)
	a.mustRun("ssh-add", key)
	msg := filepath.Join(a.Home, "msg")
	os.WriteFile(msg, []byte("hello\n"), 0o600)
	sign := func(ns string) (string, int) {
		return a.run("sh", "-c", fmt.Sprintf("sh -c 'ssh-keygen -Y sign -f %s.pub -n %s %s'", key, ns, msg))
	}
	if out, code := sign("git"); code != 0 {
		t.Fatalf("git signature: exit %d\n%s", code, out)
	}
	if out, code := sign("npm"); code == 0 {
		t.Fatalf("npm signature was not refused:\n%s", out)
	}
	a.stop()
	l, err := audit.Open(a.Audit, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(deepChainRecord(time.Now())); err != nil {
		t.Fatal(err)
	}
	l.Close()
	return a, key
}

func TestI13cAuditTableFitsTheTerminal(t *testing.T) {
	a, _ := auditSession(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + a.Home, "LANG=C.UTF-8", "TERM=xterm-256color"}
	args := []string{"audit", "--audit-log", a.Audit}

	// Piped: rows whole, no colour.
	piped, code := runEnv(t, env, "", agentBin(), args...)
	if code != 0 || strings.Contains(piped, "\x1b") || strings.Contains(piped, "…") {
		t.Fatalf("piped: exit %d, colour or cut cells:\n%s", code, piped)
	}
	chain := deepChainRecord(time.Time{}).Client.Chain
	if !strings.Contains(piped, chain) || !strings.Contains(piped, "here → bastion.example.com (forwarded) → jump.example.com (forwarded) → db.internal") {
		t.Errorf("piped output lost the chain or the path:\n%s", piped)
	}
	if w := maxLineWidth(strings.Split(piped, "\n")); w <= 160 {
		t.Errorf("piped rows are %d columns at most: cut?\n%s", w, piped)
	}

	pid := regexp.MustCompile(`\((\d+)\)`)
	for _, cols := range []int{80, 120, 200} {
		out, code := ptySized(t, env, cols, 40, agentBin(), args...)
		lines := screenLines(out)
		t.Logf("%d columns:\n%s", cols, strings.Join(lines, "\n"))
		if code != 0 || len(lines) < 5 {
			t.Fatalf("%d columns: exit %d\n%s", cols, code, out)
		}
		for i, l := range lines {
			if utf8.RuneCountInString(l) > cols && !strings.HasPrefix(l, "Cut to fit") {
				t.Errorf("%d columns: line %d is %d columns wide:\n%s", cols, i, utf8.RuneCountInString(l), l)
			}
		}
		header := lines[0]
		for _, col := range []string{"SEQ", "TIME", "DECISION", "KEY", "PATH", "RULE"} {
			if !strings.Contains(header, col) {
				t.Errorf("%d columns: no %s column: %s", cols, col, header)
			}
		}
		// Colour for decisions, from the escape codes themselves.
		if !strings.Contains(out, "\x1b[32mallowed") || !strings.Contains(out, "\x1b[31mdenied") || !strings.Contains(out, "\x1b[33m (asked") &&
			!strings.Contains(out, "\x1b[33m…") && cols >= 120 {
			t.Errorf("%d columns: decisions not coloured:\n%q", cols, out)
		}
		hint := lines[len(lines)-1]
		if !strings.HasPrefix(hint, fmt.Sprintf("Cut to fit %d columns", cols)) || !strings.Contains(hint, "`safe-agent audit --long`") ||
			!strings.Contains(hint, "`safe-agent audit show SEQ`") {
			t.Errorf("%d columns: last line %q, want the hint for --long and show", cols, hint)
		}
		// A pid is shown whole or not at all.
		body := strings.Join(lines, "\n")
		if regexp.MustCompile(`\(\d*…|\(\d+\s*$`).MatchString(body) {
			t.Errorf("%d columns: a pid is cut:\n%s", cols, body)
		}
		for _, m := range pid.FindAllStringSubmatch(body, -1) {
			if !strings.Contains(piped, "("+m[1]+")") {
				t.Errorf("%d columns: pid %s is not one of the record's", cols, m[1])
			}
		}
		if strings.Contains(header, "PROCESS") {
			// The deep chain, cut at a whole element.
			if !regexp.MustCompile(`ssh \(4194301\)( ← git \(4194300\))?( ← bash \(123456\))? ← …`).MatchString(body) {
				t.Errorf("%d columns: the deep chain is not cut at a whole element:\n%s", cols, body)
			}
		} else if cols >= 200 {
			t.Errorf("%d columns: PROCESS left out:\n%s", cols, header)
		}
	}

	// NO_COLOR: same layout, no colour.
	out, code := ptySized(t, append(env, "NO_COLOR=1"), 100, 40, agentBin(), args...)
	if code != 0 || strings.Contains(out, "\x1b[") || !strings.Contains(out, "denied") {
		t.Errorf("NO_COLOR: exit %d\n%q", code, out)
	}
}

func maxLineWidth(lines []string) int {
	w := 0
	for _, l := range lines {
		w = max(w, utf8.RuneCountInString(l))
	}
	return w
}

func TestI13cAuditShowAndLong(t *testing.T) {
	a, key := auditSession(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + a.Home, "LANG=C.UTF-8"}
	out, code := runEnv(t, env, "", agentBin(), "audit", "--audit-log", a.Audit, "--decision", "denied", "--json")
	var denied audit.Record
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &denied); code != 0 || err != nil {
		t.Fatalf("audit --json: exit %d, %v\n%s", code, err, out)
	}
	seq := fmt.Sprint(denied.Seq)

	// The table names the record's SEQ, and show prints it in full.
	table, _ := runEnv(t, env, "", agentBin(), "audit", "--audit-log", a.Audit, "--decision", "denied")
	if rows := strings.Split(strings.TrimSpace(table), "\n"); len(rows) != 2 || !strings.HasPrefix(rows[1], seq+" ") {
		t.Errorf("table does not start the denied row with its SEQ %s:\n%s", seq, table)
	}
	out, code = runEnv(t, env, "", agentBin(), "audit", "show", seq, "--audit-log", a.Audit)
	fp := fingerprintOf(t, key+".pub")
	for _, want := range []string{
		"seq " + seq + "  ",
		"  decision     denied\n",
		"  key          work-laptop " + fp + " (ssh-ed25519)\n",
		"  purpose      sign npm\n",
		"  data sha256  ",
		"  process      ssh-keygen (",
		" ← sh (",
		"  client       pid ",
		"  rule         ",
		"  reason       ",
		"  prev hash    ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit show %s lacks %q:\n%s", seq, want, out)
		}
	}
	if code != 0 || strings.Contains(out, "…") {
		t.Errorf("audit show %s: exit %d, or cut:\n%s", seq, code, out)
	}

	out, code = runEnv(t, env, "", agentBin(), "audit", "--long", "--key", "work-laptop", "-n", "2", "--audit-log", a.Audit)
	blocks := strings.Split(strings.TrimSpace(out), "\n\n")
	if code != 0 || len(blocks) != 2 || !strings.Contains(blocks[0], "  decision     denied\n") ||
		!strings.Contains(blocks[1], "  process      "+deepChainRecord(time.Time{}).Client.Chain+"\n") ||
		!strings.Contains(blocks[1], "  hop 3        db.internal SHA256:db\n") {
		t.Errorf("audit --long -n 2: exit %d, %d blocks:\n%s", code, len(blocks), out)
	}

	out, code = runEnv(t, env, "", agentBin(), "audit", "show", "99999", "--audit-log", a.Audit)
	if code != 1 || !strings.Contains(out, "no record 99999 in "+a.Audit) {
		t.Errorf("audit show 99999: exit %d\n%s", code, out)
	}
}
