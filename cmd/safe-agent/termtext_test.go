package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
)

// Strings a hostile client chooses: the remote user of a login, an SSHSIG
// namespace, a key comment, host names, a process chain.
const (
	hostileUser    = "\x1b[2K\rFORGED allowed  work  log in as deploy"
	hostileUserEsc = `\x1b[2K\rFORGED allowed  work  log in as deploy`
	hostileComment = "work\u202e\nkey"
	hostileHost    = "jump\x07.example"
	hostileChain   = "ssh (1) ← evil\x1b]0;title\x07"
)

// hostileRecord is a refused login whose client-supplied fields would,
// printed raw, erase the row and print a forged one.
func hostileRecord(t0 time.Time) audit.Record {
	return audit.Record{Time: t0, Event: audit.EventSign, Decision: audit.DecisionDenied,
		Rule: "defaults.deny", Reason: "login as " + hostileUser + " refused",
		Key:     &audit.Key{Fingerprint: "SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo", Type: "ssh-ed25519", Comment: hostileComment},
		Purpose: &audit.Purpose{Kind: audit.PurposeLogin, User: hostileUser},
		Path:    []audit.Hop{{Names: []string{hostileHost}, Fingerprint: "SHA256:jumpkey", Forwarded: true}},
		Client:  &audit.Client{PID: 1, UID: 1000, Exe: "/usr/bin/ssh", Chain: hostileChain}}
}

func appendRecords(t *testing.T, path string, recs ...audit.Record) {
	t.Helper()
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// assertTerminalSafe fails when out holds a byte a terminal acts on (other
// than the line breaks between rows) or a bidi control.
func assertTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for i := 0; i < len(out); i++ {
		if c := out[i]; (c < 0x20 && c != '\n') || c == 0x7f {
			t.Errorf("%s: raw control byte %#x at %d:\n%q", what, c, i, out)
			return
		}
	}
	if strings.ContainsAny(out, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u0085\u009b") {
		t.Errorf("%s: raw bidi or C1 control:\n%q", what, out)
	}
}

func TestAuditOutputEscapesClientStrings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendRecords(t, path, hostileRecord(auditT0))
	ctx := context.Background()

	out, _, code := runAuditCLI(t, ctx, "audit", "--audit-log", path)
	if code != 0 {
		t.Fatalf("audit: exit %d", code)
	}
	assertTerminalSafe(t, "audit table", out)
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("audit table has %d lines, want header and one row:\n%s", n, out)
	}
	for _, want := range []string{
		"log in as " + hostileUserEsc + "  here",                 // PURPOSE, whole: not a terminal
		`work\u202e\nkey`,                                        // KEY
		`here → jump\x07.example (forwarded)`,                    // PATH
		`ssh (1) ← evil\x1b]0;title\x07`,                         // PROCESS
		"defaults.deny: login as " + hostileUserEsc + " refused", // RULE / DETAIL
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit table lacks %s:\n%s", want, out)
		}
	}

	// JSON stays exact: the record round-trips byte for byte.
	out, _, code = runAuditCLI(t, ctx, "audit", "--audit-log", path, "--json")
	if code != 0 {
		t.Fatalf("audit --json: exit %d", code)
	}
	if strings.ContainsAny(out, "\x1b\r\x07") {
		t.Errorf("--json has raw control bytes: %q", out)
	}
	var got audit.Record
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Purpose.User != hostileUser || got.Key.Comment != hostileComment || got.Path[0].Names[0] != hostileHost ||
		got.Client.Chain != hostileChain || got.Reason != "login as "+hostileUser+" refused" {
		t.Errorf("--json changed the client's strings: %+v", got)
	}
}

// Records that arrive while --follow runs are escaped like the first batch.
func TestAuditFollowEscapesClientStrings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendRecords(t, path, auditFixture()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() {
		time.Sleep(300 * time.Millisecond)
		appendRecords(t, path, hostileRecord(auditT0.Add(time.Minute)))
	}()
	out, _, code := runAuditCLI(t, ctx, "audit", "--audit-log", path, "--follow")
	if code != 0 {
		t.Fatalf("audit --follow: exit %d", code)
	}
	assertTerminalSafe(t, "audit --follow", out)
	if !strings.Contains(out, "login as "+hostileUserEsc+" refused") || strings.Count(out, "\n") != 3 {
		t.Errorf("audit --follow did not print the escaped record as one row:\n%s", out)
	}
}

func TestStatusEscapesClientStrings(t *testing.T) {
	st := agent.Status{PID: 42, Started: auditT0, Socket: "/run/agent.sock", Keystore: "keyring", MemoryLocked: true,
		Policy: "/p.toml", PolicyError: "p.toml:1:1: bad \x1b[31m\np.toml:2:1: x", AuditLog: "/a.jsonl",
		Keys: []agent.KeyInfo{{Fingerprint: "SHA256:x", Type: "ssh-ed25519", Comment: hostileComment,
			Allow: []string{hostileHost}, Restricted: "to " + hostileHost}},
		Notes: []string{"connection from " + hostileChain + " closed\nnote: all fine"}}
	var b bytes.Buffer
	printStatus(&b, statusReport{Status: st, Recent: []audit.Record{hostileRecord(auditT0)}}, "", auditT0.Add(time.Hour))
	out := b.String()
	assertTerminalSafe(t, "status", out)
	for _, want := range []string{
		`work\u202e\nkey`, `allow jump\x07.example; ssh-add -h to jump\x07.example`,
		`note:      connection from ssh (1) ← evil\x1b]0;title\x07 closed\nnote: all fine`,
		"             p.toml:1:1: bad \\x1b[31m\n             p.toml:2:1: x\n",
		"login as " + hostileUserEsc + " refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

func TestKeyTableEscapesComments(t *testing.T) {
	var b bytes.Buffer
	printKeyTable(&b, []listedKey{
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:a", Type: "ssh-ed25519", Comment: "tab\there\x1b[8m"}, Loaded: true},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:b", Type: "ssh-ed25519", Comment: "plain"}, InStore: true},
	})
	out := b.String()
	assertTerminalSafe(t, "key table", out)
	if !strings.Contains(out, `tab\there\x1b[8m  no      yes`) || strings.Count(out, "\n") != 3 {
		t.Errorf("key table:\n%s", out)
	}
}

func TestDoctorCheckEscapes(t *testing.T) {
	var b bytes.Buffer
	printCheck(&b, checkResult{Name: "agent", Status: checkWarn, Msg: "served " + hostileChain + "\nsecond line",
		Notes: []string{"from " + hostileUser}, Fix: "do \x1b[1mthis"})
	out := b.String()
	assertTerminalSafe(t, "doctor", out)
	want := "warn  agent        served ssh (1) ← evil\\x1b]0;title\\x07\n" +
		"                   second line\n" +
		"                   note: from " + hostileUserEsc + "\n" +
		"                   fix: do \\x1b[1mthis\n"
	if out != want {
		t.Errorf("doctor check:\n%q\nwant\n%q", out, want)
	}
}

// The agent's own log (slog's text handler on stderr, as serve sets it up)
// quotes any value with a control or invisible character, so a hostile
// user name in a log line cannot end the line or move the cursor.
func TestSlogTextHandlerQuotesControlCharacters(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Warn("refused "+hostileUser, "user", hostileUser, "comment", hostileComment, hostileHost, "bidi\u2066x")
	out := b.String()
	assertTerminalSafe(t, "slog", strings.TrimSuffix(out, "\n"))
	if strings.Count(out, "\n") != 1 {
		t.Errorf("one log call wrote %d lines: %q", strings.Count(out, "\n"), out)
	}
	for _, want := range []string{
		`msg="refused \x1b[2K\rFORGED allowed  work  log in as deploy"`,
		`user="\x1b[2K\rFORGED allowed  work  log in as deploy"`,
		`comment="work\u202e\nkey"`,
		`"jump\a.example"="bidi\u2066x"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %s: %s", want, out)
		}
	}
}

// policy explain's reason quotes the user, namespace and key it is given,
// and its notes the host names (pasted, perhaps, from an audit record).
func TestPolicyExplainEscapes(t *testing.T) {
	_, file := policyFixture(t)
	out, _, code := runPolicyCLI(t, "policy", "explain", "--policy", file, "--key", "work-laptop",
		"--path", "jump.example>db\x1b[2K", "--user", hostileUser)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	assertTerminalSafe(t, "policy explain", out)
	for _, want := range []string{"log in as " + hostileUserEsc, `note: db\x1b[2K is not in known_hosts`} {
		if !strings.Contains(out, want) {
			t.Errorf("policy explain lacks %q:\n%s", want, out)
		}
	}
}
