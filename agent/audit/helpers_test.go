package audit

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock returns a clock that ticks one second per call.
func testClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// logBuffer collects slog output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testOptions(logs *logBuffer) Options {
	if logs == nil {
		logs = &logBuffer{}
	}
	return Options{Now: testClock(), Logger: slog.New(slog.NewTextHandler(logs, nil)), SyncInterval: time.Hour,
		freeSpace: plentyOfSpace}
}

// plentyOfSpace is a file system with 100 GiB free: tests do not depend on
// the machine's disk.
func plentyOfSpace(string) (diskSpace, error) {
	return diskSpace{free: 100 << 30, total: 200 << 30}, nil
}

// signRec is a realistic sign record, distinguishable by i.
func signRec(i int) Record {
	return Record{
		Event:    EventSign,
		Decision: DecisionAllowed,
		Rule:     `key "work-*" allow jump.example>*.internal`,
		Reason:   fmt.Sprintf("reason %d", i),
		Key:      &Key{Fingerprint: "SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo", Type: "ssh-ed25519", Comment: "work-laptop"},
		Purpose:  &Purpose{Kind: PurposeLogin, User: "deploy", DataSHA256: DataHash([]byte(fmt.Sprint(i)))},
		Path: []Hop{
			{Names: []string{"jump.example"}, Fingerprint: "SHA256:jumpjumpjump", Forwarded: true},
			{Names: []string{"db.internal", "10.0.0.7"}, Fingerprint: "SHA256:dbdbdbdb"},
		},
		Client: &Client{PID: 1234 + i, UID: 1000, Exe: "/usr/bin/ssh", Chain: "ssh (1234) ← bash (1000) ← sshd"},
		Prompt: &Prompt{Outcome: PromptYes, WaitMS: 1500},
	}
}

func mustOpen(t testing.TB, path string, o Options) *Log {
	t.Helper()
	l, err := Open(path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustAppend(t testing.TB, l *Log, r Record) {
	t.Helper()
	if err := l.Append(r); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

// writeLog writes n sign records to a new log at dir/audit.jsonl.
func writeLog(t testing.TB, dir string, n int, o Options) string {
	t.Helper()
	path := filepath.Join(dir, "audit.jsonl")
	l := mustOpen(t, path, o)
	for i := 1; i <= n; i++ {
		mustAppend(t, l, signRec(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readLines returns the lines of a file without their newlines; a last line
// without a newline is included.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	return lines
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func parseLine(t testing.TB, line []byte) Record {
	t.Helper()
	r, err := ParseRecord(line)
	if err != nil {
		t.Fatalf("ParseRecord(%s): %v", line, err)
	}
	return r
}

func mustVerify(t testing.TB, paths ...string) Report {
	t.Helper()
	rep, err := Verify(paths...)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func requireOK(t testing.TB, rep Report) {
	t.Helper()
	if rep.Break != nil {
		t.Fatalf("chain broken: %v", rep.Break)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
