package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/safe-agent/safe-agent/agent/audit"
)

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// visibleWidth is how many columns a line takes on a terminal.
func visibleWidth(s string) int { return utf8.RuneCountInString(ansiRE.ReplaceAllString(s, "")) }

// longChainRecord is a forwarded login from deep inside a process tree.
func longChainRecord() audit.Record {
	r := auditFixture()[1]
	r.Seq = 1234
	r.Client.Chain = "ssh (1234567) ← bash (999) ← tmux: server (4242) ← systemd (1001) ← systemd (1)"
	r.Path = append([]audit.Hop{{Names: []string{"bastion.example"}, Fingerprint: "SHA256:bastion", Forwarded: true}}, r.Path...)
	return r
}

func TestCutChainKeepsWholeElements(t *testing.T) {
	chain := "ssh (1234567) ← bash (999) ← tmux: server (4242) ← systemd (1)"
	for _, tc := range []struct {
		w    int
		want string
	}{
		{80, chain},
		{40, "ssh (1234567) ← bash (999) ← …"},
		{29, "ssh (1234567) ← …"},
		{17, "ssh (1234567) ← …"},
		{16, "s… (1234567) ← …"},
		{14, "ssh (1234567)…"},
		{13, "ssh (1234567)"},
	} {
		if got := cutChain(chain, tc.w); got != tc.want {
			t.Errorf("cutChain(w=%d) = %q, want %q", tc.w, got, tc.want)
		}
	}
	pid := regexp.MustCompile(`\((\d+)\)`)
	whole := map[string]bool{"1234567": true, "999": true, "4242": true, "1": true}
	for w := 12; w <= len(chain)+2; w++ {
		got := cutChain(chain, w)
		if width(got) > w {
			t.Errorf("cutChain(w=%d) = %q: %d columns", w, got, width(got))
		}
		// Every pid shown is whole and closed: no "(12…".
		if strings.Count(got, "(") != len(pid.FindAllString(got, -1)) {
			t.Errorf("cutChain(w=%d) = %q cuts a pid", w, got)
		}
		for _, m := range pid.FindAllStringSubmatch(got, -1) {
			if !whole[m[1]] {
				t.Errorf("cutChain(w=%d) = %q shows pid %s", w, got, m[1])
			}
		}
	}
}

func TestCutDecisionKeepsTheWord(t *testing.T) {
	for _, tc := range []struct {
		w    int
		want string
	}{
		{30, "allowed (asked: yes, 2.3s)"},
		{25, "allowed (asked: yes)"},
		{19, "allowed (asked)"},
		{14, "allowed…"},
		{7, "allowe…"},
	} {
		if got := cutDecision("allowed (asked: yes, 2.3s)", tc.w); got != tc.want {
			t.Errorf("cutDecision(w=%d) = %q, want %q", tc.w, got, tc.want)
		}
	}
}

func TestCutPathKeepsDestination(t *testing.T) {
	path := "here → jump.example (forwarded) → bastion (forwarded) → db.internal"
	for _, tc := range []struct {
		w    int
		want string
	}{
		{70, path},
		{55, "here → jump.example (forwarded) → … → db.internal"},
		{30, "here → … → db.internal"},
		{16, "… → db.internal"},
		{10, "here → ju…"},
	} {
		if got := cutPath(path, tc.w); got != tc.want {
			t.Errorf("cutPath(w=%d) = %q, want %q", tc.w, got, tc.want)
		}
	}
}

func TestAuditTableFitsTheTerminal(t *testing.T) {
	recs := append(auditFixture(), longChainRecord(), hostileRecord(auditT0))
	for i := range recs {
		recs[i].Seq = uint64(1000 + i)
	}
	for _, w := range []int{60, 80, 100, 120, 160, 250} {
		tbl := newStyledAuditTable(recs, time.UTC, outStyle{width: w, color: true}, false)
		lines := []string{tbl.header()}
		for _, r := range recs {
			lines = append(lines, tbl.row(r))
		}
		for i, l := range lines {
			l = strings.TrimSuffix(l, "\n")
			if visibleWidth(l) > w {
				t.Errorf("width %d: line %d is %d columns:\n%s", w, i, visibleWidth(l), l)
			}
			if i > 0 && !strings.HasPrefix(l, "10") {
				t.Errorf("width %d: row %d does not start with its SEQ: %q", w, i, l)
			}
			if strings.Contains(l, "\n") || strings.ContainsAny(ansiRE.ReplaceAllString(l, ""), "\x1b\r\x07\u202e") {
				t.Errorf("width %d: row %d is not terminal-safe: %q", w, i, l)
			}
		}
		hint := tbl.hint()
		if !strings.Contains(hint, "`safe-agent audit --long`") || !strings.Contains(hint, "`safe-agent audit show SEQ`") {
			t.Errorf("width %d: hint %q", w, hint)
		}
		// PROCESS goes first, and when shown is cut at a whole element.
		header := lines[0]
		if w <= 120 && strings.Contains(header, "PROCESS") {
			t.Errorf("width %d keeps PROCESS: %s", w, header)
		}
		if w <= 120 && !regexp.MustCompile(`not shown: [^)]*PROCESS`).MatchString(hint) {
			t.Errorf("width %d: hint does not say PROCESS was left out: %q", w, hint)
		}
		if strings.Contains(header, "PROCESS") && !strings.Contains(lines[len(recs)-1], "ssh (1234567) ← ") {
			t.Errorf("width %d: the long chain lost its first element: %s", w, lines[len(recs)-1])
		}
		need := []string{"SEQ", "TIME", "DECISION"}
		if w >= 80 {
			// Key, where and why still fit at 80 columns.
			need = append(need, "KEY", "PATH", "RULE")
		}
		for _, col := range need {
			if !strings.Contains(header, col) {
				t.Errorf("width %d: no %s column: %s", w, col, header)
			}
		}
	}
	// Wide enough for everything: nothing cut, no hint.
	tbl := newStyledAuditTable(recs[:5], time.UTC, outStyle{width: 400}, false)
	for _, r := range recs[:5] {
		tbl.row(r)
	}
	if h := tbl.hint(); h != "" {
		t.Errorf("400 columns: hint %q", h)
	}
}

func TestAuditTableColours(t *testing.T) {
	recs := auditFixture()
	for _, color := range []bool{true, false} {
		tbl := newStyledAuditTable(recs, time.UTC, outStyle{width: 200, color: color}, false)
		asked, denied, lock := tbl.row(recs[1]), tbl.row(recs[2]), tbl.row(recs[3])
		if !color {
			if strings.Contains(asked+denied+lock, "\x1b") {
				t.Errorf("colour without colour: %q %q", asked, denied)
			}
			continue
		}
		if !strings.Contains(asked, ansiGreen+"allowed"+ansiReset+ansiYellow+" (asked: yes, 2.3s)"+ansiReset) {
			t.Errorf("asked and allowed row: %q", asked)
		}
		if !strings.Contains(denied, ansiRed+"denied"+ansiReset) || strings.Contains(denied, ansiYellow) {
			t.Errorf("denied row: %q", denied)
		}
		if strings.Contains(lock, "\x1b") {
			t.Errorf("a lock has no decision to colour: %q", lock)
		}
	}
}

func TestDetectStyleNotATerminal(t *testing.T) {
	env := map[string]string{"COLUMNS": "80", "TERM": "xterm-256color"}
	if s := detectStyle(&bytes.Buffer{}, func(k string) string { return env[k] }); s != (outStyle{}) {
		t.Errorf("a buffer got %+v, want no width and no colour", s)
	}
}

func TestAuditLongAndShow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	appendRecords(t, path, append(auditFixture(), hostileRecord(auditT0.Add(5*time.Minute)))...)
	ctx := context.Background()

	out, errOut, code := runAuditCLI(t, ctx, "audit", "show", "3", "--audit-log", path)
	for _, want := range []string{
		"seq 3  ", "  sign\n",
		"  decision     allowed\n",
		"  prompt       asked: yes after 2.34s\n",
		"  key          work-laptop SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo (ssh-ed25519)\n",
		"  purpose      log in as deploy\n",
		"  data sha256  " + audit.DataHash([]byte("x")) + "\n",
		"  path         here → jump.example (forwarded) → db.internal\n",
		"  hop 1        jump.example SHA256:jumpkey, through a forwarded agent\n",
		"  hop 2        db.internal SHA256:dbkey\n",
		"  process      ssh (1234) ← bash (999)\n",
		"  client       pid 1234, uid 1000, /usr/bin/ssh\n",
		"  rule         key \"work-*\" allow jump.example>*.internal\n",
		"  reason       confirmed\n",
		"  prev hash    ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit show 3 lacks %q:\n%s", want, out)
		}
	}
	if code != 0 || errOut != "" {
		t.Errorf("audit show 3: exit %d, stderr %q", code, errOut)
	}

	// The hostile record in full is escaped like the table.
	out, _, code = runAuditCLI(t, ctx, "audit", "show", "7", "--audit-log", path)
	assertTerminalSafe(t, "audit show", out)
	if code != 0 || !strings.Contains(out, "  purpose      log in as "+hostileUserEsc+"\n") {
		t.Errorf("audit show 7: exit %d:\n%s", code, out)
	}

	out, _, code = runAuditCLI(t, ctx, "audit", "--long", "-n", "2", "--audit-log", path)
	blocks := strings.Split(out, "\n\n")
	if code != 0 || len(blocks) != 2 || !strings.HasPrefix(blocks[0], "seq 6  ") || !strings.HasPrefix(blocks[1], "seq 7  ") {
		t.Errorf("audit --long -n 2: exit %d, %d blocks:\n%s", code, len(blocks), out)
	}
	assertTerminalSafe(t, "audit --long", out)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "show", "99"}, "no record 99 in " + path},
		{[]string{"audit", "show", "seven"}, `audit show "seven": give the record's number, as the SEQ column`},
		{[]string{"audit", "--long", "--json"}, "none of the others can be"},
	} {
		_, errOut, code := runAuditCLI(t, ctx, append(tc.args, "--audit-log", path)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errOut, tc.want)
		}
	}
}
