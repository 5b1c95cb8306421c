package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stepClock ticks one second per call; jump moves it on.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func newStepClock() *stepClock {
	return &stepClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func (c *stepClock) jump(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeDisk is a settable free-space seam.
type fakeDisk struct {
	mu   sync.Mutex
	free uint64
}

func (d *fakeDisk) set(free uint64) {
	d.mu.Lock()
	d.free = free
	d.mu.Unlock()
}

func (d *fakeDisk) space(string) (diskSpace, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return diskSpace{free: d.free, total: 100 << 30}, nil
}

// rotateOnce appends records from next on until the log rotates once, and
// returns the next record number.
func rotateOnce(t *testing.T, l *Log, next int) int {
	t.Helper()
	size := func() int64 { l.mu.Lock(); defer l.mu.Unlock(); return l.size }
	for {
		before := size()
		mustAppend(t, l, signRec(next))
		next++
		if size() < before {
			return next
		}
	}
}

// appendN appends records first..first+n-1.
func appendN(t *testing.T, l *Log, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		mustAppend(t, l, signRec(i))
	}
}

func readCheckpoint(t *testing.T, path string) []CheckpointEntry {
	t.Helper()
	es, err := ReadCheckpoint(CheckpointPath(path))
	if err != nil {
		t.Fatalf("ReadCheckpoint: %v", err)
	}
	return es
}

func mustVerifyLog(t *testing.T, path string) Report {
	t.Helper()
	rep, err := VerifyLog(path)
	if err != nil {
		t.Fatalf("VerifyLog: %v", err)
	}
	return rep
}

// rotatedLog writes 60 records with MaxSize 3000 (about 15 files) under
// Keep 2, a clock and a disk the test controls; the log is left open.
func rotatedLog(t *testing.T, logs *logBuffer) (string, *Log, *stepClock, *fakeDisk) {
	t.Helper()
	clock, disk := newStepClock(), &fakeDisk{free: 100 << 30}
	o := testOptions(logs)
	o.MaxSize, o.Keep, o.Now, o.freeSpace = 3000, 2, clock.now, disk.space
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := mustOpen(t, path, o)
	appendN(t, l, 1, 60)
	return path, l, clock, disk
}

func TestRotationKeepsRecordsYoungerThanMinRetention(t *testing.T) {
	path, l, clock, _ := rotatedLog(t, nil)
	defer l.Close()
	files, _ := Files(path)
	if len(files) <= 3 {
		t.Fatalf("files = %d; want more than Keep+1 = 3: records of the last minute must not be rotated away", len(files))
	}
	if _, err := os.Stat(CheckpointPath(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a checkpoint exists (%v) although nothing was deleted", err)
	}
	rep := mustVerifyLog(t, path)
	requireOK(t, rep)
	if rep.First != 1 || rep.Checkpoint != nil {
		t.Errorf("report %+v; want the chain from record 1, nothing rotated away", rep)
	}
	if h := l.Health(); h.Files != len(files) || !h.OldestKept.Equal(time.Date(2025, 3, 1, 12, 0, 1, 0, time.UTC)) || h.DiskLow || h.Reason != "" {
		t.Errorf("health = %+v; want %d files, oldest record at 12:00:01, all well", h, len(files))
	}

	// A day later the old files go at the next rotation, down to Keep,
	// and each deletion is in the checkpoint.
	clock.jump(25 * time.Hour)
	rotateOnce(t, l, 61)
	after, _ := Files(path)
	if len(after) != 3 {
		t.Fatalf("files after a day = %v; want Keep=2 rotated files and the current one", after)
	}
	es := readCheckpoint(t, path)
	if len(es) != len(files)-2 {
		t.Fatalf("checkpoint has %d lines, want one per deleted file (%d)", len(es), len(files)-2)
	}
	first := parseLine(t, readLines(t, after[0])[0])
	last := es[len(es)-1]
	if es[0].FirstSeq != 1 || es[0].FirstPrev != "" || last.LastSeq != first.Seq-1 || last.LastHash != first.Prev ||
		!contains(last.Reason, "older than 24h") || last.Files != 1 || last.Records != last.LastSeq-last.FirstSeq+1 {
		t.Errorf("checkpoint %+v ... %+v; want records 1 to %d ending in %s", es[0], last, first.Seq-1, first.Prev)
	}
	rep = mustVerifyLog(t, path)
	requireOK(t, rep)
	if c := rep.Checkpoint; c == nil || c.Records != first.Seq-1 || c.Files != len(es) || c.Unaccounted != 0 {
		t.Errorf("checkpoint report %+v; want %d records in %d files", rep.Checkpoint, first.Seq-1, len(es))
	}
}

func TestLowDiskOverridesRetention(t *testing.T) {
	logs := &logBuffer{}
	path, l, _, disk := rotatedLog(t, logs)
	defer l.Close()
	var mu sync.Mutex
	var told []Health
	l.o.OnRetentionOverride = func(h Health) { mu.Lock(); told = append(told, h); mu.Unlock() }
	before, _ := Files(path)

	disk.set(100 << 20) // 100 MiB free, below the default 256 MiB
	if h := l.Health(); !h.DiskLow || h.FreeBytes != 100<<20 || !h.OverriddenAt.IsZero() ||
		h.Reason != "only 100 MiB free on the audit log's file system (below 256 MiB): rotation deletes audit records younger than 24h" {
		t.Errorf("health before rotation = %+v", h)
	}
	rotateOnce(t, l, 61)
	after, _ := Files(path)
	if len(after) != 3 {
		t.Fatalf("files = %v; want Keep=2 rotated and the current one: a nearly full disk overrides retention", after)
	}
	es := readCheckpoint(t, path)
	deleted := uint64(0)
	for _, e := range es {
		deleted += e.Records
		if !contains(e.Reason, "free space low (100 MiB, below 256 MiB): deleted although its newest record is only") {
			t.Errorf("checkpoint reason %q", e.Reason)
		}
	}
	if len(es) != len(before)-2 {
		t.Errorf("%d checkpoint lines, want %d", len(es), len(before)-2)
	}
	h := l.Health()
	if !h.DiskLow || h.OverriddenRecords != deleted || h.OverriddenAt.IsZero() || h.Files != 3 ||
		!contains(h.Reason, fmt.Sprintf("; %d audit records younger than 24h were deleted for lack of space (last at 2025-03-01T12:", deleted)) {
		t.Errorf("health after rotation = %+v; want DiskLow and %d records overridden", h, deleted)
	}
	mu.Lock()
	if len(told) != 1 || told[0].OverriddenRecords != deleted {
		t.Errorf("OnRetentionOverride calls = %+v; want one with %d records", told, deleted)
	}
	mu.Unlock()
	if !contains(logs.String(), "disk nearly full: deleted audit records younger than the retention window") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	hdr := parseLine(t, readLines(t, path)[0])
	if !contains(hdr.Detail, "free space was low (100 MiB), so rotation deleted audit.jsonl.") || hdr.Checkpoint != "audit.jsonl.checkpoint" {
		t.Errorf("new file's header = %+v; want it to say what was deleted", hdr)
	}
	requireOK(t, mustVerifyLog(t, path))

	disk.set(10 << 30)
	if h := l.Health(); h.DiskLow || h.OverriddenRecords != deleted {
		t.Errorf("health with space again = %+v; want DiskLow false, the override still reported", h)
	}
}

// checkpointedLog is a closed log with files rotated away (by count:
// MinRetention negative) and a checkpoint of them.
func checkpointedLog(t *testing.T) string {
	t.Helper()
	o := testOptions(nil)
	o.MaxSize, o.Keep, o.MinRetention = 3000, 3, -1
	path := writeLog(t, t.TempDir(), 80, o)
	if es := readCheckpoint(t, path); len(es) < 3 {
		t.Fatalf("checkpoint has %d lines; want a few", len(es))
	}
	return path
}

func TestVerifyLogWithCheckpoint(t *testing.T) {
	path := checkpointedLog(t)
	files, _ := Files(path)
	rep := mustVerifyLog(t, path)
	requireOK(t, rep)
	es := readCheckpoint(t, path)
	if c := rep.Checkpoint; c == nil || c.Records != rep.First-1 || c.Files != len(es) || c.Path != CheckpointPath(path) {
		t.Errorf("report %+v, checkpoint %+v", rep, rep.Checkpoint)
	}
	// Plain Verify does not look at the checkpoint.
	if rep := mustVerify(t, files...); rep.Break != nil || !rep.Continues || rep.Checkpoint != nil {
		t.Errorf("Verify = %+v", rep)
	}
}

func TestVerifyLogFindsUnrecordedDeletion(t *testing.T) {
	t.Run("checkpoint deleted", func(t *testing.T) {
		path := checkpointedLog(t)
		os.Remove(CheckpointPath(path))
		files, _ := Files(path)
		first := parseLine(t, readLines(t, files[0])[0]).Seq
		rep := mustVerifyLog(t, path)
		want := Finding{File: files[0], Line: 1, Kind: KindRemoved, Detail: fmt.Sprintf(
			"the chain starts at record %d but no checkpoint accounts for the %d records before it (deleted without a record); there is no checkpoint file %s",
			first, first-1, CheckpointPath(path))}
		if rep.Break == nil || *rep.Break != want {
			t.Errorf("break = %v\nwant %v", rep.Break, want)
		}
	})
	t.Run("oldest file deleted by hand", func(t *testing.T) {
		path := checkpointedLog(t)
		files, _ := Files(path)
		os.Remove(files[0])
		es := readCheckpoint(t, path)
		first := parseLine(t, readLines(t, files[1])[0]).Seq
		rep := mustVerifyLog(t, path)
		last := es[len(es)-1].LastSeq
		want := Finding{File: files[1], Line: 1, Kind: KindRemoved, Detail: fmt.Sprintf(
			"the chain starts at record %d but the checkpoint accounts only for records 1 to %d: records %d to %d were deleted without a record",
			first, last, last+1, first-1)}
		if rep.Break == nil || *rep.Break != want {
			t.Errorf("break = %v\nwant %v", rep.Break, want)
		}
	})
	t.Run("without any checkpoint", func(t *testing.T) {
		// Keep by age: nothing rotated away, so no checkpoint; then the
		// oldest file goes by hand.
		path, l, _, _ := rotatedLog(t, nil)
		l.Close()
		files, _ := Files(path)
		os.Remove(files[0])
		first := parseLine(t, readLines(t, files[1])[0]).Seq
		rep := mustVerifyLog(t, path)
		if rep.Break == nil || rep.Break.File != files[1] || !strings.HasPrefix(rep.Break.Detail,
			fmt.Sprintf("the chain starts at record %d but no checkpoint accounts for the %d records before it (deleted without a record)", first, first-1)) {
			t.Errorf("break = %v", rep.Break)
		}
	})
	t.Run("every file replaced by a new log", func(t *testing.T) {
		path := checkpointedLog(t)
		files, _ := Files(path)
		for _, f := range files {
			os.Remove(f)
		}
		writeLog(t, filepath.Dir(path), 3, testOptions(nil))
		rep := mustVerifyLog(t, path)
		if rep.Break == nil || rep.Break.File != CheckpointPath(path) || rep.Break.Line != 1 || rep.Break.Kind != KindEdited {
			t.Errorf("break = %v", rep.Break)
		}
	})
}

// editCheckpoint rewrites the checkpoint of path through edit.
func editCheckpoint(t *testing.T, path string, edit func([]CheckpointEntry) []CheckpointEntry) {
	t.Helper()
	var b bytes.Buffer
	for _, e := range edit(readCheckpoint(t, path)) {
		line, _ := json.Marshal(e)
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(CheckpointPath(path), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyLogFindsTamperedCheckpoint(t *testing.T) {
	flip := func(h string) string { return strings.Repeat("0", len(h)) }
	for _, tc := range []struct {
		name   string
		edit   func(es []CheckpointEntry) []CheckpointEntry
		line   func(n int) int
		kind   Kind
		detail string
	}{
		{"last hash changed", func(es []CheckpointEntry) []CheckpointEntry {
			es[len(es)-1].LastHash = flip(es[len(es)-1].LastHash)
			return es
		}, func(n int) int { return n }, KindEdited, "the records rotated away end with hash 0000"},
		{"a middle hash changed", func(es []CheckpointEntry) []CheckpointEntry {
			es[1].LastHash = flip(es[1].LastHash)
			return es
		}, func(int) int { return 3 }, KindEdited, "does not continue line 2"},
		{"a middle line removed", func(es []CheckpointEntry) []CheckpointEntry { return slices.Delete(es, 1, 2) },
			func(int) int { return 2 }, KindRemoved, "are missing from the checkpoint between line 1 and this one"},
		{"first line removed", func(es []CheckpointEntry) []CheckpointEntry { return es[1:] },
			func(int) int { return 1 }, KindRemoved, "the checkpoint starts at record"},
		{"record count changed", func(es []CheckpointEntry) []CheckpointEntry { es[0].Records++; return es },
			func(int) int { return 1 }, KindEdited, "does not match seq"},
		{"seq moved to hide a deletion", func(es []CheckpointEntry) []CheckpointEntry {
			es[len(es)-1].LastSeq += 5
			es[len(es)-1].Records += 5
			return es
		}, func(n int) int { return n }, KindEdited, "no line of the checkpoint ends at record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := checkpointedLog(t)
			n := len(readCheckpoint(t, path))
			editCheckpoint(t, path, tc.edit)
			rep := mustVerifyLog(t, path)
			if b := rep.Break; b == nil || b.File != CheckpointPath(path) || b.Line != tc.line(n) || b.Kind != tc.kind || !contains(b.Detail, tc.detail) {
				t.Errorf("break = %v; want %s:%d: %s: …%s…", b, CheckpointPath(path), tc.line(n), tc.kind, tc.detail)
			}
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		path := checkpointedLog(t)
		f, _ := os.OpenFile(CheckpointPath(path), os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString("hello\n")
		f.Close()
		rep := mustVerifyLog(t, path)
		if b := rep.Break; b == nil || b.File != CheckpointPath(path) || b.Kind != KindEdited || !contains(b.Detail, "not a checkpoint entry") {
			t.Errorf("break = %v", b)
		}
	})
}

func TestCheckpointWrittenBeforeDeletionSurvivesACrash(t *testing.T) {
	// The writer stopped after writing the checkpoint line, before deleting
	// the file: verify accepts the overlap and the next rotation deletes
	// the file without a second line.
	o := testOptions(nil)
	o.MaxSize, o.Keep, o.MinRetention = 3000, 3, -1
	path := writeLog(t, t.TempDir(), 40, o)
	files, _ := Files(path)
	s, err := spanOf(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := appendCheckpoint(CheckpointPath(path), entryFor(files[0], s, time.Now(), "test")); err != nil {
		t.Fatal(err)
	}
	n := len(readCheckpoint(t, path))
	rep := mustVerifyLog(t, path)
	requireOK(t, rep)
	if rep.Checkpoint == nil || rep.Checkpoint.Overlap != 1 {
		t.Errorf("checkpoint report %+v; want one line for a file still here", rep.Checkpoint)
	}
	t.Run("an overlapping line that does not match is found", func(t *testing.T) {
		saved, _ := os.ReadFile(CheckpointPath(path))
		defer os.WriteFile(CheckpointPath(path), saved, 0o600)
		editCheckpoint(t, path, func(es []CheckpointEntry) []CheckpointEntry {
			es[len(es)-1].LastHash = strings.Repeat("0", 64)
			return es
		})
		rep := mustVerifyLog(t, path)
		if b := rep.Break; b == nil || b.Line != n || !contains(b.Detail, "still here, has hash") {
			t.Errorf("break = %v", b)
		}
	})

	l := mustOpen(t, path, o)
	appendN(t, l, 41, 8)
	l.Close()
	es := readCheckpoint(t, path)
	for i := 1; i < len(es); i++ {
		if es[i].LastSeq == es[i-1].LastSeq {
			t.Fatalf("checkpoint lines %d and %d are for the same file", i, i+1)
		}
	}
	requireOK(t, mustVerifyLog(t, path))
}

func TestCheckpointMergesOldLines(t *testing.T) {
	var es []CheckpointEntry
	prev := ""
	for i := range 12 {
		h := fmt.Sprintf("%064x", i+1)
		es = append(es, CheckpointEntry{Files: 1, FirstSeq: uint64(10*i + 1), FirstPrev: prev, LastSeq: uint64(10*i + 10),
			LastHash: h, Records: 10, Deleted: time.Unix(int64(i), 0)})
		prev = h
	}
	merged := mergeOldest(es, 5)
	if len(merged) != 5 || merged[0].Files != 8 || merged[0].Records != 80 || merged[0].FirstSeq != 1 || merged[0].LastSeq != 80 ||
		merged[0].LastHash != es[7].LastHash || merged[1] != es[8] {
		t.Fatalf("merged = %+v", merged)
	}
	rep := Report{Records: 5, First: 121, Last: 125, FirstPrev: es[11].LastHash, Continues: true, firstFile: "x"}
	c := checkpointCheck{path: "cp", entries: merged, rep: &rep}
	if f := c.run(); f != nil {
		t.Fatalf("merged checkpoint does not verify: %v", f)
	}
	if rep.Checkpoint.Records != 120 || rep.Checkpoint.Files != 12 {
		t.Errorf("report %+v", rep.Checkpoint)
	}
}

// oldWriterLog writes files as a safe-agent without checkpoints left them:
// the chain starts at seq 101 (records 1–100 rotated away), headers carry
// no checkpoint field.
func oldWriterLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	seq, prev := uint64(100), strings.Repeat("ab", 32)
	for _, name := range []string{"audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"} {
		var lines [][]byte
		for i := range 4 {
			seq++
			r := signRec(int(seq))
			if i == 0 {
				r = Record{Event: EventHeader, LogID: newLogID(), Detail: "safe-agent audit log"}
			}
			r.Time, r.Seq, r.Prev = time.Date(2025, 3, 1, 12, 0, int(seq%60), 0, time.UTC), seq, prev
			b, err := marshalLine(&r)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, b)
			prev = lineHash(b)
		}
		writeLines(t, filepath.Join(dir, name), lines)
	}
	return path
}

func TestUpgradeFromAWriterWithoutCheckpoints(t *testing.T) {
	path := oldWriterLog(t)
	rep := mustVerifyLog(t, path)
	if rep.Break == nil || !contains(rep.Break.Detail, "the chain starts at record 101 but no checkpoint accounts for the 100 records before it") {
		t.Fatalf("before the upgrade: break %v", rep.Break)
	}
	logs := &logBuffer{}
	l := mustOpen(t, path, testOptions(logs))
	l.Close()
	es := readCheckpoint(t, path)
	if len(es) != 1 || !es[0].Unaccounted || es[0].FirstSeq != 1 || es[0].LastSeq != 100 || es[0].LastHash != strings.Repeat("ab", 32) {
		t.Fatalf("checkpoint = %+v; want one unaccounted line for records 1–100", es)
	}
	if !contains(logs.String(), "noted in the checkpoint as unaccounted") {
		t.Errorf("no warning: %s", logs.String())
	}
	rep = mustVerifyLog(t, path)
	requireOK(t, rep)
	if c := rep.Checkpoint; c == nil || c.Records != 100 || c.Unaccounted != 100 || c.Files != 0 {
		t.Errorf("checkpoint report %+v; want 100 unaccounted records", rep.Checkpoint)
	}
}

func TestDeletedCheckpointIsNotAdoptedAgain(t *testing.T) {
	// Once a writer kept a checkpoint (its headers say so), a missing
	// checkpoint is a deletion: Open must not paper over the gap.
	path := checkpointedLog(t)
	os.Remove(CheckpointPath(path))
	logs := &logBuffer{}
	o := testOptions(logs)
	o.MaxSize, o.Keep, o.MinRetention = 3000, 3, -1
	l := mustOpen(t, path, o)
	l.Close()
	if _, err := os.Stat(CheckpointPath(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open wrote a checkpoint (%v)", err)
	}
	if !contains(logs.String(), "the audit checkpoint is missing although this log kept one") {
		t.Errorf("no error logged: %s", logs.String())
	}
	if rep := mustVerifyLog(t, path); rep.Break == nil || rep.Break.Kind != KindRemoved {
		t.Errorf("break = %v; want the gap reported", rep.Break)
	}
}

func TestCheckpointForNamesTheLogsCheckpoint(t *testing.T) {
	for in, want := range map[string]string{
		"/s/audit.jsonl":     "/s/audit.jsonl.checkpoint",
		"/s/audit.jsonl.12":  "/s/audit.jsonl.checkpoint",
		"/s/audit.jsonl.012": "/s/audit.jsonl.012.checkpoint",
		"copy.jsonl":         "copy.jsonl.checkpoint",
	} {
		if got := CheckpointFor(in); got != want {
			t.Errorf("CheckpointFor(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestHealthMeasuresTheRealFileSystem(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("free space is measured on Linux only")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	o := testOptions(nil)
	o.freeSpace = nil // statfs
	l := mustOpen(t, path, o)
	defer l.Close()
	mustAppend(t, l, signRec(1))
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	h := l.Health()
	want := st.Bavail * uint64(st.Bsize)
	diff := int64(h.FreeBytes) - int64(want)
	if !h.FreeKnown || diff > 64<<20 || diff < -64<<20 || h.Files != 1 || h.OldestKept.IsZero() {
		t.Errorf("health = %+v; want about %d bytes free, 1 file", h, want)
	}
}
