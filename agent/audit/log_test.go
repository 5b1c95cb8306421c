package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestAppendWritesHashChainedLines(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 3, testOptions(nil))
	lines := readLines(t, path)
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want a header and 3 records:\n%s", len(lines), lines)
	}
	hdr := parseLine(t, lines[0])
	if hdr.Event != EventHeader || hdr.Seq != 1 || hdr.Prev != "" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(hdr.LogID) {
		t.Errorf("header = %+v; want event header, seq 1, empty prev, a 32-hex log_id", hdr)
	}
	for i := 1; i < len(lines); i++ {
		got := parseLine(t, lines[i])
		want := signRec(i)
		want.Seq, want.Prev = uint64(i+1), lineHash(lines[i-1])
		want.Time = time.Date(2025, 3, 1, 12, 0, i, 0, time.UTC)
		gotJSON, _ := marshalLine(&got)
		wantJSON, _ := marshalLine(&want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, gotJSON, wantJSON)
		}
	}
	rep := mustVerify(t, path)
	requireOK(t, rep)
	if rep.Records != 4 || rep.First != 1 || rep.Last != 4 || rep.Continues || rep.LastHash != lineHash(lines[3]) {
		t.Errorf("report = %+v", rep)
	}
}

func TestSignedDataIsNeverWritten(t *testing.T) {
	// The agent passes DataHash(data); the data itself must not appear.
	data := []byte("SECRET-SESSION-ID-AND-USERAUTH-REQUEST")
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	mustAppend(t, l, Record{Event: EventSign, Purpose: &Purpose{Kind: PurposeOpaque, DataSHA256: DataHash(data)}})
	l.Close()
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), string(data)) || !strings.Contains(string(b), DataHash(data)) {
		t.Errorf("log should hold the data's hash, not the data:\n%s", b)
	}
}

func TestOpenCreatesPrivateDirAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "safe-agent", "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	defer l.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestOpenTightensFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	l := mustOpen(t, path, testOptions(logs))
	defer l.Close()
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 || !contains(logs.String(), "readable by others") {
		t.Errorf("mode %v, log %q; want 0600 and a warning", fi.Mode().Perm(), logs.String())
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 2, testOptions(nil))
	l := mustOpen(t, path, testOptions(nil))
	mustAppend(t, l, signRec(3))
	l.Close()
	lines := readLines(t, path)
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4 (one header only)", len(lines))
	}
	if r := parseLine(t, lines[3]); r.Seq != 4 || r.Prev != lineHash(lines[2]) {
		t.Errorf("after reopen: seq %d prev %s; want 4 and the hash of line 3", r.Seq, r.Prev)
	}
	requireOK(t, mustVerify(t, path))
}

func TestRotationKeepsChainAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(nil)
	o.MaxSize, o.Keep = 3000, 3
	o.MinRetention = time.Second // the test clock ticks 1 s a record: older files go by count
	path := writeLog(t, dir, 60, o)

	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{path + ".3", path + ".2", path + ".1", path}
	if !slices.Equal(files, want) {
		t.Fatalf("files = %v, want %v (Keep=3)", files, want)
	}
	var prevLast []byte
	var seq uint64
	for _, f := range files {
		fi, _ := os.Stat(f)
		lines := readLines(t, f)
		if fi.Size() > o.MaxSize {
			t.Errorf("%s is %d bytes, over MaxSize %d", f, fi.Size(), o.MaxSize)
		}
		hdr := parseLine(t, lines[0])
		if hdr.Event != EventHeader {
			t.Fatalf("%s: first line is %q, want a header", f, hdr.Event)
		}
		if prevLast != nil && (hdr.Prev != lineHash(prevLast) || hdr.Seq != seq+1) {
			t.Errorf("%s: header prev/seq %s/%d do not continue the previous file (%s/%d)", f, hdr.Prev, hdr.Seq, lineHash(prevLast), seq)
		}
		prevLast = lines[len(lines)-1]
		seq = parseLine(t, prevLast).Seq
	}
	if last := parseLine(t, prevLast); last.Reason != "reason 60" {
		t.Errorf("last record = %q, want reason 60", last.Reason)
	}
	rep := mustVerify(t, files...)
	requireOK(t, rep)
	if !rep.Continues || rep.Last != seq || rep.Records != int(rep.Last-rep.First+1) {
		t.Errorf("report = %+v; want a chain continuing from a dropped file up to seq %d", rep, seq)
	}
}

func TestAppendRejectsReservedAndEmptyEvents(t *testing.T) {
	l := mustOpen(t, filepath.Join(t.TempDir(), "a.jsonl"), testOptions(nil))
	defer l.Close()
	for _, ev := range []string{"", EventHeader, EventTorn} {
		if err := l.Append(Record{Event: ev}); err == nil {
			t.Errorf("Append(event %q) succeeded, want an error", ev)
		}
	}
	l.Close()
	if err := l.Append(signRec(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, testOptions(nil))
	defer l.Close()
	_, err := Open(path, testOptions(nil))
	if err == nil || !contains(err.Error(), "in use by another process") {
		t.Fatalf("second Open = %v, want an 'in use' error", err)
	}
}

func TestUnwritableLogGivesClearErrors(t *testing.T) {
	dir := t.TempDir()
	isDir := filepath.Join(dir, "audit.jsonl")
	if err := os.Mkdir(isDir, 0o700); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	for _, tc := range []struct{ path, want string }{
		{isDir, "open " + isDir + ": is a directory"},
		{filepath.Join(notDir, "audit.jsonl"), "create audit log directory: mkdir " + notDir + ": not a directory"},
	} {
		_, err := Open(tc.path, testOptions(nil))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Open(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestDiskFullRefusesRecords(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /dev/full: the disk-full test needs it")
		}
		t.Skip("no /dev/full: the disk-full test needs it")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	l := mustOpen(t, path, testOptions(nil))
	for range 2 { // and it keeps refusing
		err := l.Append(signRec(1))
		if err == nil || err.Error() != "write audit log "+path+": write "+path+": no space left on device" {
			t.Errorf("Append on a full disk = %v, want a 'no space left on device' error", err)
		}
	}
	l.Close()
}

// fakeFile wraps a real file to inject write, truncate and fsync failures.
type fakeFile struct {
	*os.File
	mu        sync.Mutex
	shortOnce bool // next Write writes half and fails with ENOSPC
	truncErr  error
	syncErr   error
	syncs     int
}

func (f *fakeFile) Write(b []byte) (int, error) {
	f.mu.Lock()
	short := f.shortOnce
	f.shortOnce = false
	f.mu.Unlock()
	if short {
		n, _ := f.File.Write(b[:len(b)/2])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Write(b)
}

func (f *fakeFile) Truncate(n int64) error {
	if f.truncErr != nil {
		return f.truncErr
	}
	return f.File.Truncate(n)
}

func (f *fakeFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	if f.syncErr != nil {
		return f.syncErr
	}
	return f.File.Sync()
}

func (f *fakeFile) setSyncErr(err error) {
	f.mu.Lock()
	f.syncErr = err
	f.mu.Unlock()
}

func (f *fakeFile) syncCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

func openFake(t *testing.T, path string, o Options) (*Log, *fakeFile) {
	t.Helper()
	var ff *fakeFile
	l, err := open(path, o, func(p string) (file, error) {
		f, err := openOSFile(p)
		if err != nil {
			return nil, err
		}
		ff = &fakeFile{File: f.(*os.File)}
		return ff, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, ff
}

func TestPartialWriteIsTakenBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, ff := openFake(t, path, testOptions(nil))
	mustAppend(t, l, signRec(1))
	before, _ := os.ReadFile(path)
	ff.shortOnce = true
	if err := l.Append(signRec(2)); err == nil || !contains(err.Error(), "no space left on device") {
		t.Fatalf("short write: Append = %v, want a no-space error", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("the partial record was left in the file:\n%s", after)
	}
	mustAppend(t, l, signRec(3))
	l.Close()
	rep := mustVerify(t, path)
	requireOK(t, rep)
	if len(rep.Torn) != 0 || rep.Records != 3 {
		t.Errorf("report = %+v; want 3 records, nothing torn", rep)
	}
}

func TestPartialWriteThatCannotBeTakenBackIsAcknowledged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, ff := openFake(t, path, testOptions(nil))
	mustAppend(t, l, signRec(1))
	ff.shortOnce, ff.truncErr = true, errors.New("EIO")
	if err := l.Append(signRec(2)); err == nil {
		t.Fatal("short write: Append succeeded")
	}
	mustAppend(t, l, signRec(3)) // reopens, finds the torn line, acknowledges it
	l.Close()
	rep := mustVerify(t, path)
	requireOK(t, rep)
	if len(rep.Torn) != 1 || rep.Torn[0].Line != 3 {
		t.Errorf("report = %+v; want the torn line 3 reported", rep)
	}
	lines := readLines(t, path)
	if r := parseLine(t, lines[3]); r.Event != EventTorn || r.Torn != lineHash(lines[2]) {
		t.Errorf("line 4 = %s; want a torn-tail record naming line 3's hash", lines[3])
	}
	if r := parseLine(t, lines[4]); r.Reason != "reason 3" {
		t.Errorf("line 5 = %s; want record 3", lines[4])
	}
}

func TestFsyncIsBatchedAndDoneOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, ff := openFake(t, path, testOptions(nil)) // SyncInterval 1h
	for i := range 100 {
		mustAppend(t, l, signRec(i))
	}
	if n := ff.syncCount(); n != 0 {
		t.Errorf("%d fsyncs during 100 appends, want 0 (batched by the interval)", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := ff.syncCount(); n != 1 {
		t.Errorf("%d fsyncs after Close, want 1", n)
	}
}

// waitFor polls cond for up to 10 s: a correctness wait, not a speed check.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFsyncHappensWithinInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	o := testOptions(nil)
	o.SyncInterval = 10 * time.Millisecond
	l, ff := openFake(t, path, o)
	defer l.Close()
	mustAppend(t, l, signRec(1))
	waitFor(t, "a background fsync", func() bool { return ff.syncCount() >= 1 })
}

func TestFailedFsyncRefusesRecordsUntilItWorks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	logs := &logBuffer{}
	o := testOptions(logs)
	o.SyncInterval = 5 * time.Millisecond
	l, ff := openFake(t, path, o)
	defer l.Close()
	ff.setSyncErr(syscall.EIO)
	mustAppend(t, l, signRec(1))
	var err error
	waitFor(t, "Append to fail after a failed fsync", func() bool {
		err = l.Append(signRec(2))
		return err != nil
	})
	if !contains(err.Error(), "the last fsync failed (input/output error)") {
		t.Errorf("Append = %v, want it to name the failed fsync", err)
	}
	if !contains(logs.String(), "fsync audit log failed") {
		t.Errorf("no error logged: %q", logs.String())
	}
	ff.setSyncErr(nil)
	waitFor(t, "Append to work again", func() bool { return l.Append(signRec(3)) == nil })
}

func TestConcurrentAppendsKeepChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	o := testOptions(nil)
	o.MaxSize = 64 << 10 // rotate a few times on the way
	o.Keep = 100
	o.SyncInterval = time.Millisecond
	l := mustOpen(t, path, o)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := l.Append(signRec(w*1000 + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	files, _ := Files(path)
	if len(files) < 2 {
		t.Fatalf("expected rotation, got %v", files)
	}
	rep := mustVerify(t, files...)
	requireOK(t, rep)
	all, err := Tail(path, 0, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range all {
		seen[r.Reason] = true
	}
	for w := range workers {
		for i := range each {
			if reason := fmt.Sprintf("reason %d", w*1000+i); !seen[reason] {
				t.Fatalf("record %q is missing", reason)
			}
		}
	}
	if len(all) != workers*each || rep.Records != workers*each+len(files) {
		t.Errorf("%d records read, %d verified in %d files; want %d records", len(all), rep.Records, len(files), workers*each)
	}
}
