package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// runAuditCLI runs `safe-agent ARGS` with ctx and returns stdout, stderr and
// the exit status main would use.
func runAuditCLI(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code := 0
	if err := root.ExecuteContext(ctx); err != nil {
		code = 1
		var ec exitCodeError
		if errors.As(err, &ec) {
			code = ec.code
		}
		if !errors.As(err, &ec) || ec.msg != "" {
			errOut.WriteString("safe-agent: " + err.Error() + "\n")
		}
	}
	return out.String(), errOut.String(), code
}

var auditT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// auditFixture is a session: start, a forwarded login that was asked and
// allowed, a local git signature denied, a lock, a policy reload failure.
func auditFixture() []audit.Record {
	key := &audit.Key{Fingerprint: "SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo", Type: "ssh-ed25519", Comment: "work-laptop"}
	return []audit.Record{
		{Time: auditT0, Event: audit.EventStart, Detail: "pid 42"},
		{Time: auditT0.Add(time.Minute), Event: audit.EventSign, Decision: audit.DecisionAllowed,
			Rule: `key "work-*" allow jump.example>*.internal`, Reason: "confirmed",
			Key:     key,
			Purpose: &audit.Purpose{Kind: audit.PurposeLogin, User: "deploy", DataSHA256: audit.DataHash([]byte("x"))},
			Path: []audit.Hop{
				{Names: []string{"jump.example"}, Fingerprint: "SHA256:jumpkey", Forwarded: true},
				{Names: []string{"db.internal"}, Fingerprint: "SHA256:dbkey"},
			},
			Client: &audit.Client{PID: 1234, UID: 1000, Exe: "/usr/bin/ssh", Chain: "ssh (1234) ← bash (999)"},
			Prompt: &audit.Prompt{Outcome: audit.PromptYes, WaitMS: 2340}},
		{Time: auditT0.Add(2 * time.Minute), Event: audit.EventSign, Decision: audit.DecisionDenied,
			Rule: "defaults.namespaces", Reason: `namespace "npm" is not allowed`,
			Key:     &audit.Key{Fingerprint: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", Type: "ssh-ed25519"},
			Purpose: &audit.Purpose{Kind: audit.PurposeSSHSig, Namespace: "npm"},
			Client:  &audit.Client{PID: 77, UID: 1000, Exe: "/usr/bin/ssh-keygen"}},
		{Time: auditT0.Add(3 * time.Minute), Event: audit.EventLock},
		{Time: auditT0.Add(4 * time.Minute), Event: audit.EventPolicyReloadFailed, Reason: "policy.toml:3:7: unknown key \"alow\"", Detail: "/home/u/.config/safe-agent/policy.toml"},
	}
}

func writeAuditFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range auditFixture() {
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditTableFormat(t *testing.T) {
	recs := auditFixture()
	for i := range recs {
		recs[i].Seq = uint64(i + 2)
	}
	tbl := newAuditTable(recs, time.UTC)
	var b strings.Builder
	b.WriteString(tbl.header())
	for _, r := range recs {
		b.WriteString(tbl.row(r))
	}
	// Not a terminal: nothing is cut (a fingerprint with no comment is
	// shortened by auditKey itself) and there is no colour.
	want := `SEQ  TIME                 DECISION                    KEY                   PURPOSE               PATH                                           PROCESS                  RULE / DETAIL
2    2025-03-01 12:00:00  -                           -                     start                 -                                              -                        pid 42
3    2025-03-01 12:01:00  allowed (asked: yes, 2.3s)  work-laptop           log in as deploy      here → jump.example (forwarded) → db.internal  ssh (1234) ← bash (999)  key "work-*" allow jump.example>*.internal: confirmed
4    2025-03-01 12:02:00  denied                      SHA256:abcdefghijkl…  sign npm              here                                           ssh-keygen (77)          defaults.namespaces: namespace "npm" is not allowed
5    2025-03-01 12:03:00  -                           -                     lock                  -                                              -                        -
6    2025-03-01 12:04:00  -                           -                     policy-reload-failed  -                                              -                        /home/u/.config/safe-agent/policy.toml: policy.toml:3:7: unknown key "alow"
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if h := tbl.hint(); h != "" {
		t.Errorf("hint %q for a table that cut nothing", h)
	}
}

func TestAuditCommand(t *testing.T) {
	path := writeAuditFixture(t)
	ctx := context.Background()

	t.Run("table, newest last", func(t *testing.T) {
		out, errOut, code := runAuditCLI(t, ctx, "audit", "--audit-log", path, "-n", "2")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 0 || errOut != "" || len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ  TIME ") ||
			!strings.Contains(lines[1], " lock ") || !strings.Contains(lines[2], "policy-reload-failed") {
			t.Errorf("code %d, stderr %q, stdout:\n%s", code, errOut, out)
		}
	})
	t.Run("json", func(t *testing.T) {
		out, _, code := runAuditCLI(t, ctx, "audit", "--audit-log", path, "--json")
		var got []audit.Record
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("not JSON: %q", line)
			}
			got = append(got, r)
		}
		want := auditFixture()
		if code != 0 || len(got) != len(want) {
			t.Fatalf("code %d, %d records; want %d", code, len(got), len(want))
		}
		for i := range want {
			if got[i].Event != want[i].Event || !got[i].Time.Equal(want[i].Time) || got[i].Seq != uint64(i+2) {
				t.Errorf("record %d = %+v", i, got[i])
			}
		}
		if got[1].Path[0].Names[0] != "jump.example" || !got[1].Path[0].Forwarded || got[1].Prompt.WaitMS != 2340 {
			t.Errorf("sign record lost detail: %+v", got[1])
		}
	})
	for _, tc := range []struct {
		args []string
		want []string // events, in order
	}{
		{[]string{"--decision", "denied"}, []string{"npm"}},
		{[]string{"--decision", "asked"}, []string{"deploy"}},
		{[]string{"--forwarded"}, []string{"deploy"}},
		{[]string{"--host", "*.internal"}, []string{"deploy"}},
		{[]string{"--key", "WORK"}, []string{"deploy"}},
		{[]string{"--since", "2025-03-01T12:02:30Z"}, []string{"lock", "policy-reload-failed"}},
	} {
		out, _, code := runAuditCLI(t, ctx, append([]string{"audit", "--audit-log", path}, tc.args...)...)
		rows := strings.Split(strings.TrimSuffix(out, "\n"), "\n")[1:]
		if code != 0 || len(rows) != len(tc.want) {
			t.Errorf("%v: code %d, got\n%s", tc.args, code, out)
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(rows[i], w) {
				t.Errorf("%v: row %d = %q, want %q", tc.args, i, rows[i], w)
			}
		}
	}
	t.Run("nothing matches", func(t *testing.T) {
		out, errOut, code := runAuditCLI(t, ctx, "audit", "--audit-log", path, "--host", "nowhere")
		if code != 0 || out != "" || errOut != "No records in "+path+" match.\n" {
			t.Errorf("code %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("follow stops with its context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		out, _, code := runAuditCLI(t, cctx, "audit", "--audit-log", path, "--follow", "-n", "1")
		if code != 0 || strings.Count(out, "\n") != 2 {
			t.Errorf("code %d, stdout:\n%s", code, out)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--decision", "maybe"}, `--decision "maybe": use allowed, denied or asked`},
			{[]string{"--since", "yesterday"}, `--since "yesterday": give a duration`},
		} {
			_, errOut, code := runAuditCLI(t, ctx, append([]string{"audit", "--audit-log", path}, tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: code %d, stderr %q; want %q", tc.args, code, errOut, tc.want)
			}
		}
	})
	t.Run("missing log", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "audit.jsonl")
		for _, args := range [][]string{{"audit"}, {"audit", "verify"}} {
			_, errOut, code := runAuditCLI(t, ctx, append(args, "--audit-log", missing)...)
			if code != 1 || !strings.Contains(errOut, "no audit log at "+missing+": ") || !strings.Contains(errOut, "pass the same --audit-log") {
				t.Errorf("%v: code %d, stderr %q", args, code, errOut)
			}
		}
	})
}

func TestAuditVerifyCommand(t *testing.T) {
	ctx := context.Background()
	path := writeAuditFixture(t)
	out, _, code := runAuditCLI(t, ctx, "audit", "verify", "--audit-log", path)
	if code != 0 || !strings.HasPrefix(out, "ok: 6 records in 1 file\nchain: seq 1 to 6, last hash ") {
		t.Errorf("intact: code %d, stdout %q", code, out)
	}

	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	edited := filepath.Join(filepath.Dir(path), "edited.jsonl")
	os.WriteFile(edited, []byte(strings.Join(lines[:2], "")+strings.Replace(lines[2], "deploy", "DEPLOY", 1)+strings.Join(lines[3:], "")), 0o600)
	out, _, code = runAuditCLI(t, ctx, "audit", "verify", edited)
	if want := edited + ":3: edited: changed after it was written: line 4 records a different hash for it\n"; code != 1 || out != want {
		t.Errorf("edited: code %d, stdout %q; want %q", code, out, want)
	}

	torn := filepath.Join(filepath.Dir(path), "torn.jsonl")
	os.WriteFile(torn, append(b, `{"time":"2025-`...), 0o600)
	for _, tc := range []struct {
		args []string
		code int
	}{{nil, 0}, {[]string{"--strict"}, 1}} {
		out, _, code = runAuditCLI(t, ctx, append([]string{"audit", "verify", torn}, tc.args...)...)
		if code != tc.code || !strings.HasPrefix(out, torn+":7: torn tail: the file ends in an incomplete record (14 bytes, no newline)") ||
			!strings.Contains(out, "\nok: 6 records in 1 file\n") {
			t.Errorf("torn %v: code %d, stdout %q", tc.args, code, out)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2025, 3, 10, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"2h", now.Add(-2 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"3d", now.AddDate(0, 0, -3)},
		{"2025-03-01", time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"2025-03-01 14:30", time.Date(2025, 3, 1, 14, 30, 0, 0, time.UTC)},
		{"2025-03-01T14:30:05+02:00", time.Date(2025, 3, 1, 12, 30, 5, 0, time.UTC)},
	} {
		got, err := parseSince(tc.in, now)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-2h", "xd", "-1d", "03/01/2025"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q) succeeded", bad)
		}
	}
}

func TestAuditHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"audit", "--help"}, {"audit", "verify", "--help"}} {
		out, _, code := runAuditCLI(t, context.Background(), args...)
		if code != 0 || !strings.Contains(out, "Examples:\n  safe-agent audit") {
			t.Errorf("%v: code %d, no Examples section:\n%s", args, code, out)
		}
	}
}

// writeRotatedAuditLog writes records into a log small enough to rotate
// many times, with minRetention as audit.Options.MinRetention.
func writeRotatedAuditLog(t *testing.T, minRetention time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "audit.jsonl")
	l, err := audit.Open(path, audit.Options{MaxSize: 2000, Keep: 2, MinRetention: minRetention})
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		for _, r := range auditFixture() {
			r.Time = time.Time{} // now: retention is by the records' age
			if err := l.Append(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAuditVerifyFindsAFileDeletedByHand(t *testing.T) {
	ctx := context.Background()
	path := writeRotatedAuditLog(t, 0) // 24 h: every file is kept
	files, err := audit.Files(path)
	if err != nil || len(files) < 4 {
		t.Fatalf("files = %v, %v; want rotation to have kept at least 4", files, err)
	}
	out, _, code := runAuditCLI(t, ctx, "audit", "verify", "--audit-log", path)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("intact: code %d, stdout %q", code, out)
	}

	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	hdr, err := audit.Tail(files[1], 0, audit.Filter{Events: []string{audit.EventHeader}})
	if err != nil || len(hdr) == 0 {
		t.Fatalf("header of %s: %v %v", files[1], hdr, err)
	}
	first := hdr[0].Seq
	out, _, code = runAuditCLI(t, ctx, "audit", "verify", "--audit-log", path)
	want := fmt.Sprintf("%s:1: removed: the chain starts at record %d but no checkpoint accounts for the %d records before it (deleted without a record); there is no checkpoint file %s\n",
		files[1], first, first-1, path+".checkpoint")
	if code != 1 || out != want {
		t.Errorf("oldest file deleted: code %d, stdout\n%q\nwant\n%q", code, out, want)
	}
	// Naming the files does not get around it.
	out, _, code = runAuditCLI(t, ctx, append([]string{"audit", "verify"}, files[1:]...)...)
	if code != 1 || out != want {
		t.Errorf("with FILEs: code %d, stdout %q", code, out)
	}
}

func TestAuditVerifyAccountsForRotatedFiles(t *testing.T) {
	ctx := context.Background()
	path := writeRotatedAuditLog(t, -1) // keep by count: old files are rotated away
	out, _, code := runAuditCLI(t, ctx, "audit", "verify", "--audit-log", path)
	re := regexp.MustCompile(`\nrotated away: the (\d+) records before seq (\d+) \((\d+) files, deleted \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d\), accounted for by ` +
		regexp.QuoteMeta(path+".checkpoint") + "\n$")
	m := re.FindStringSubmatch(out)
	if code != 0 || !strings.HasPrefix(out, "ok: ") || m == nil {
		t.Fatalf("code %d, stdout %q; want ok and a line on the rotated-away records", code, out)
	}
	if n, _ := strconv.Atoi(m[1]); strconv.Itoa(n+1) != m[2] {
		t.Errorf("%s records before seq %s", m[1], m[2])
	}

	// A tampered checkpoint fails.
	cp := path + ".checkpoint"
	b, _ := os.ReadFile(cp)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	last := len(lines) - 1
	lines[last] = regexp.MustCompile(`"last_hash":"[0-9a-f]`).ReplaceAllStringFunc(lines[last], func(s string) string {
		if strings.HasSuffix(s, "0") {
			return s[:len(s)-1] + "1"
		}
		return s[:len(s)-1] + "0"
	})
	os.WriteFile(cp, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	out, _, code = runAuditCLI(t, ctx, "audit", "verify", "--audit-log", path)
	if code != 1 || !strings.HasPrefix(out, fmt.Sprintf("%s:%d: edited: the records rotated away end with hash ", cp, last+1)) {
		t.Errorf("tampered checkpoint: code %d, stdout %q", code, out)
	}
}
