package audit

import (
	"bytes"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSink records what it is sent; fail makes Send fail; block makes
// Send wait until released.
type fakeSink struct {
	mu    sync.Mutex
	mode  string
	recs  []Record
	lines [][]byte
	fail  error
	block chan struct{}
}

func (s *fakeSink) Send(r Record, line []byte) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.recs = append(s.recs, r)
	s.lines = append(s.lines, bytes.Clone(line))
	return nil
}

func (s *fakeSink) Close() error { return nil }

func (s *fakeSink) seqs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, r := range s.recs {
		out = append(out, r.Seq)
	}
	return out
}

// modeBox is a reloadable mode, as the policy holder gives.
type modeBox struct{ v atomic.Value }

func (m *modeBox) set(s string) { m.v.Store(s) }
func (m *modeBox) get() (string, bool) {
	s, ok := m.v.Load().(string)
	return s, ok
}

func TestMirrorCopiesEveryRecordInFileOrder(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	sink := &fakeSink{}
	var mode modeBox
	mode.set(MirrorJournal)
	l.SetMirror(MirrorOptions{Mode: mode.get, Open: func(string) (Sink, error) { return sink, nil }})
	for i := 1; i <= 5; i++ {
		mustAppend(t, l, signRec(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if got := sink.seqs(); len(got) != len(lines) {
		t.Fatalf("mirrored seqs %v, file has %d lines", got, len(lines))
	}
	// The header the log wrote itself is mirrored too, and each copy is
	// the exact line of the file, so it can be checked against the chain.
	if sink.recs[0].Event != EventHeader {
		t.Errorf("first mirrored record is %q, want the header", sink.recs[0].Event)
	}
	for i, line := range lines {
		if !bytes.Equal(sink.lines[i], line) {
			t.Errorf("mirrored line %d differs from the file:\n got %s\nwant %s", i, sink.lines[i], line)
		}
	}
}

func TestMirrorFollowsModeChangesAndWaitsForTheFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	sinks := map[string]*fakeSink{MirrorJournal: {}, MirrorSyslog: {}}
	var mode modeBox // unknown at first: the policy is not loaded yet
	l.SetMirror(MirrorOptions{Mode: mode.get, Open: func(m string) (Sink, error) { return sinks[m], nil }})
	mustAppend(t, l, signRec(1)) // header 1, record 2: wait for the mode
	mode.set(MirrorSyslog)
	mustAppend(t, l, signRec(2)) // 3
	waitFor(t, "the syslog copies", func() bool { return len(sinks[MirrorSyslog].seqs()) == 3 })
	mode.set(MirrorNone)
	mustAppend(t, l, signRec(3)) // 4: nowhere
	mode.set(MirrorJournal)
	mustAppend(t, l, signRec(4)) // 5
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sinks[MirrorSyslog].seqs(); !equalSeqs(got, 1, 2, 3) {
		t.Errorf("syslog got seqs %v, want [1 2 3]", got)
	}
	if got := sinks[MirrorJournal].seqs(); !equalSeqs(got, 5) {
		t.Errorf("journal got seqs %v, want [5]", got)
	}
}

// TestMirrorNoneQueuesNothing: with audit_mirror = "none" (the default)
// records are not handed to the mirror's goroutine one by one (a wake-up
// per signature was the pipeline's largest cost): a stuck sink from an
// earlier mode sees no overflow however many records follow, and a
// later mode gets the records from then on.
func TestMirrorNoneQueuesNothing(t *testing.T) {
	logs := &logBuffer{}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, testOptions(logs))
	sink := &fakeSink{block: make(chan struct{})}
	var mode modeBox
	mode.set(MirrorSyslog)
	l.SetMirror(MirrorOptions{Mode: mode.get, QueueSize: 4, Open: func(string) (Sink, error) { return sink, nil }})
	mustAppend(t, l, signRec(1)) // header 1, record 2: the goroutine is stuck in Send
	mode.set(MirrorNone)
	for i := 2; i <= 50; i++ { // 3 … 51: only the first is queued
		mustAppend(t, l, signRec(i))
	}
	mode.set(MirrorSyslog)
	mustAppend(t, l, signRec(51)) // 52
	close(sink.block)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := sink.seqs(); !equalSeqs(got, 1, 2, 52) {
		t.Errorf("syslog got seqs %v, want [1 2 52]", got)
	}
	if strings.Contains(logs.String(), "records dropped") {
		t.Errorf("records in mode none filled the mirror queue:\n%s", logs.String())
	}
}

func TestMirrorFailureNeverFailsAppendAndIsLoggedOnce(t *testing.T) {
	logs := &logBuffer{}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	o := testOptions(logs)
	l := mustOpen(t, path, o)
	opens := 0
	var mode modeBox
	mode.set(MirrorJournal)
	l.SetMirror(MirrorOptions{Mode: mode.get, Now: func() time.Time { return time.Unix(1000, 0) },
		Open: func(string) (Sink, error) {
			opens++
			return nil, errors.New("systemd journal: /run/systemd/journal/socket is not there")
		}})
	for i := 1; i <= 20; i++ {
		mustAppend(t, l, signRec(i)) // never an error
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, path)); n != 21 {
		t.Errorf("file has %d lines, want 21: the file is written whatever the mirror does", n)
	}
	if opens != 1 {
		t.Errorf("sink opened %d times within the retry interval, want 1", opens)
	}
	// First failure at once, the rest summed up when the mirror stops:
	// two lines, not 21.
	out := logs.String()
	if n := strings.Count(out, "audit mirror failed"); n != 2 {
		t.Errorf("%d failure lines logged, want 2 (rate-limited):\n%s", n, out)
	}
	if !strings.Contains(out, "failed=20") || !strings.Contains(out, "journal/socket is not there") {
		t.Errorf("log does not count the failures or give the reason:\n%s", out)
	}
}

func TestStuckMirrorNeverBlocksAppend(t *testing.T) {
	logs := &logBuffer{}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, testOptions(logs))
	sink := &fakeSink{block: make(chan struct{})}
	var mode modeBox
	mode.set(MirrorSyslog)
	l.SetMirror(MirrorOptions{Mode: mode.get, QueueSize: 4, Open: func(string) (Sink, error) { return sink, nil }})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 50; i++ {
			if err := l.Append(signRec(i)); err != nil {
				t.Errorf("Append: %v", err)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Append blocked behind a stuck mirror")
	}
	close(sink.block)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(sink.seqs()); got >= 51 || got == 0 {
		t.Errorf("sink got %d records; want some, with the overflow dropped", got)
	}
	if !strings.Contains(logs.String(), "records dropped") {
		t.Errorf("dropped records not logged:\n%s", logs.String())
	}
}

// TestSyslogMirrorOverARealSocket sends through log/syslog to a unixgram
// socket, as it does to /dev/log.
func TestSyslogMirrorOverARealSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	var mode modeBox
	mode.set(MirrorSyslog)
	l.SetMirror(MirrorOptions{Mode: mode.get, Open: func(string) (Sink, error) { return OpenSyslog("unixgram", sock) }})
	denied := signRec(1)
	denied.Decision, denied.Prompt = DecisionDenied, nil
	denied.Key.Comment = "evil\nline\u202e"
	mustAppend(t, l, denied)
	mustAppend(t, l, signRec(2))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	var msgs []string
	buf := make([]byte, 64<<10)
	for range 3 {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatalf("read syslog socket: %v (got %q)", err, msgs)
		}
		msgs = append(msgs, string(buf[:n]))
	}
	// authpriv (10) * 8 + warning (4) = 84; + info (6) = 86.
	if !strings.HasPrefix(msgs[1], "<84>") || !strings.HasPrefix(msgs[2], "<86>") {
		t.Errorf("priorities: %q, %q; want <84> for the refusal, <86> for the allowed", msgs[1][:5], msgs[2][:5])
	}
	want := `safe-agent[`
	for i, m := range msgs {
		if !strings.Contains(m, want) {
			t.Errorf("message %d has no tag %q: %q", i, want, m)
		}
		if strings.Count(strings.TrimSuffix(m, "\n"), "\n") != 0 {
			t.Errorf("message %d is not one line: %q", i, m)
		}
		if !strings.HasSuffix(strings.TrimSuffix(m, "\n"), " "+string(lines[i])) {
			t.Errorf("message %d does not end with the file's line:\n%q\n%q", i, m, lines[i])
		}
	}
	if !strings.Contains(msgs[1], `#2 sign denied: key evil\u000aline\u202e (SHA256:`) {
		t.Errorf("summary of the refusal: %q", msgs[1])
	}
}

func TestSummaryAndJournalFields(t *testing.T) {
	r := signRec(7)
	r.Seq = 42
	r.Decision = DecisionDenied
	f := JournalFields(r, []byte(`{"x":1}`))
	want := map[string]string{
		"SAFE_AGENT_EVENT":    "sign",
		"SAFE_AGENT_SEQ":      "42",
		"SAFE_AGENT_DECISION": "denied",
		"SAFE_AGENT_KEY_FP":   "SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo",
		"SAFE_AGENT_PATH":     "here → jump.example (forwarded) → db.internal",
		"SAFE_AGENT_RULE":     `key "work-*" allow jump.example>*.internal`,
		"SAFE_AGENT_PURPOSE":  "log in as deploy",
		"SAFE_AGENT_RECORD":   `{"x":1}`,
		"SAFE_AGENT_PROMPT":   "yes",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %q, want %q", k, f[k], v)
		}
	}
	s := Summary(r)
	wantS := `#42 sign denied: key work-laptop (SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo), log in as deploy, here → jump.example (forwarded) → db.internal, prompt yes, rule key "work-*" allow jump.example>*.internal, reason 7`
	if s != wantS {
		t.Errorf("Summary:\n got %s\nwant %s", s, wantS)
	}
}

func equalSeqs(got []uint64, want ...uint64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
