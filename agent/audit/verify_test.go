package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestVerifyFindsTampering edits a log of a header and ten records (line k
// has seq k) in one way each and checks the finding names the right line.
func TestVerifyFindsTampering(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 10, testOptions(nil))
	orig := readLines(t, path)
	clone := func() [][]byte {
		out := make([][]byte, len(orig))
		for i, l := range orig {
			out[i] = bytes.Clone(l)
		}
		return out
	}
	handMade := []byte(`{"time":"2025-03-01T12:00:11Z","seq":12,"event":"sign","decision":"allowed","reason":"trust me","prev":""}`)

	for _, tc := range []struct {
		name   string
		tamper func(l [][]byte) [][]byte
		want   Finding // Detail checked only when set
	}{
		{"one byte changed in a reason", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte("reason 4"), []byte("reason 5"), 1)
			return l
		}, Finding{Line: 5, Kind: KindEdited, Detail: "changed after it was written: line 6 records a different hash for it"}},
		{"one byte changed in prev", func(l [][]byte) [][]byte {
			i := bytes.Index(l[4], []byte(`"prev":"`)) + 8
			l[4][i] ^= 1
			return l
		}, Finding{Line: 5, Kind: KindEdited}},
		{"seq changed", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`"seq":5`), []byte(`"seq":7`), 1)
			return l
		}, Finding{Line: 5, Kind: KindEdited, Detail: "seq is 7, expected 5"}},
		{"header edited", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte("safe-agent"), []byte("Safe-agent"), 1)
			return l
		}, Finding{Line: 1, Kind: KindEdited}},
		{"line removed", func(l [][]byte) [][]byte { return slices.Delete(l, 4, 5) },
			Finding{Line: 5, Kind: KindRemoved, Detail: "1 record(s) missing before this line: seq jumps from 4 to 6"}},
		{"three lines removed", func(l [][]byte) [][]byte { return slices.Delete(l, 3, 6) },
			Finding{Line: 4, Kind: KindRemoved, Detail: "3 record(s) missing before this line: seq jumps from 3 to 7"}},
		{"header removed", func(l [][]byte) [][]byte { return l[1:] },
			Finding{Line: 1, Kind: KindRemoved}},
		{"two lines swapped", func(l [][]byte) [][]byte { l[4], l[5] = l[5], l[4]; return l },
			Finding{Line: 5, Kind: KindReordered, Detail: "this line was written after line 6 (seq 6 after seq 5)"}},
		{"header swapped with the first record", func(l [][]byte) [][]byte { l[0], l[1] = l[1], l[0]; return l },
			Finding{Line: 1, Kind: KindReordered}},
		{"copy of the last line appended with an edit", func(l [][]byte) [][]byte {
			return append(l, bytes.Replace(l[10], []byte("reason 10"), []byte("reason 99"), 1))
		}, Finding{Line: 12, Kind: KindAppended}},
		{"hand-written line appended", func(l [][]byte) [][]byte { return append(l, handMade) },
			Finding{Line: 12, Kind: KindAppended}},
		{"hand-written line inserted", func(l [][]byte) [][]byte { return slices.Insert(l, 5, handMade) },
			Finding{Line: 6, Kind: KindInserted, Detail: "line 7 continues the chain from line 5, skipping this one"}},
		{"line duplicated", func(l [][]byte) [][]byte { return slices.Insert(l, 5, l[4]) },
			Finding{Line: 6, Kind: KindInserted}},
		{"garbage line inserted", func(l [][]byte) [][]byte { return slices.Insert(l, 5, []byte("hello")) },
			Finding{Line: 6, Kind: KindInserted}},
		{"line made invalid JSON", func(l [][]byte) [][]byte { l[4] = l[4][:len(l[4])-1]; return l },
			Finding{Line: 5, Kind: KindEdited}},
		{"empty line inserted", func(l [][]byte) [][]byte { return slices.Insert(l, 5, []byte{}) },
			Finding{Line: 6, Kind: KindInserted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.jsonl")
			writeLines(t, p, tc.tamper(clone()))
			rep := mustVerify(t, p)
			if rep.Break == nil {
				t.Fatalf("not detected; report %+v", rep)
			}
			got := *rep.Break
			tc.want.File = p
			if tc.want.Detail == "" {
				got.Detail = ""
			}
			if got != tc.want {
				t.Errorf("finding:\n got %v\nwant %v", rep.Break, tc.want)
			}
		})
	}
}

func TestVerifyAcrossRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(nil)
	o.MaxSize, o.Keep = 2500, 50
	path := writeLog(t, dir, 30, o)
	files, _ := Files(path)
	if len(files) < 4 {
		t.Fatalf("want at least 4 files, got %v", files)
	}
	rep := mustVerify(t, files...)
	requireOK(t, rep)
	if rep.Files != len(files) || rep.Continues || rep.First != 1 {
		t.Errorf("report %+v", rep)
	}

	t.Run("a file missing in the middle", func(t *testing.T) {
		rest := slices.Delete(slices.Clone(files), 1, 2)
		rep := mustVerify(t, rest...)
		if rep.Break == nil || rep.Break.File != files[2] || rep.Break.Line != 1 || rep.Break.Kind != KindRemoved {
			t.Errorf("got %v, want %s:1 removed", rep.Break, files[2])
		}
	})
	t.Run("files out of order", func(t *testing.T) {
		swapped := slices.Clone(files)
		swapped[1], swapped[2] = swapped[2], swapped[1]
		rep := mustVerify(t, swapped...)
		if rep.Break == nil || rep.Break.File != files[2] || rep.Break.Line != 1 {
			t.Errorf("got %v, want a break at %s:1", rep.Break, files[2])
		}
	})
	t.Run("last line of a rotated file removed", func(t *testing.T) {
		d := t.TempDir()
		var copies []string
		for i, f := range files {
			lines := readLines(t, f)
			if i == 1 {
				lines = lines[:len(lines)-1]
			}
			c := filepath.Join(d, filepath.Base(f))
			writeLines(t, c, lines)
			copies = append(copies, c)
		}
		rep := mustVerify(t, copies...)
		if rep.Break == nil || rep.Break.File != copies[2] || rep.Break.Line != 1 || rep.Break.Kind != KindRemoved {
			t.Errorf("got %v, want %s:1 removed", rep.Break, copies[2])
		}
	})
	t.Run("rotated file truncated mid-record", func(t *testing.T) {
		d := t.TempDir()
		var copies []string
		for i, f := range files {
			b, _ := os.ReadFile(f)
			if i == 1 {
				b = b[:len(b)-20]
			}
			c := filepath.Join(d, filepath.Base(f))
			os.WriteFile(c, b, 0o600)
			copies = append(copies, c)
		}
		rep := mustVerify(t, copies...)
		n := len(readLines(t, files[1]))
		if rep.Break == nil || rep.Break.File != copies[1] || rep.Break.Line != n || rep.Break.Kind != KindTruncated {
			t.Errorf("got %v, want %s:%d truncated mid-record", rep.Break, copies[1], n)
		}
	})
}

func TestTornTailIsReportedAndChainContinues(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 3, testOptions(nil))
	// A crash in the middle of writing record 4.
	full, _ := marshalLine(&Record{Event: EventSign, Seq: 5, Reason: "reason 4", Prev: "x"})
	fragment := full[:len(full)/2]
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(fragment)
	f.Close()

	rep := mustVerify(t, path)
	requireOK(t, rep)
	if len(rep.Torn) != 1 || rep.Torn[0].Line != 5 || rep.Torn[0].Kind != KindTorn || rep.Records != 4 {
		t.Fatalf("before reopen: %+v; want line 5 reported as a torn tail, 4 records", rep)
	}

	logs := &logBuffer{}
	l := mustOpen(t, path, testOptions(logs))
	if !contains(logs.String(), "audit log ends in an incomplete record") {
		t.Errorf("no warning logged on open: %q", logs.String())
	}
	mustAppend(t, l, signRec(5))
	mustAppend(t, l, signRec(6))
	l.Close()

	lines := readLines(t, path)
	if len(lines) != 8 || !bytes.Equal(lines[4], fragment) {
		t.Fatalf("lines:\n%s\nwant 4 lines, the kept fragment, a torn-tail record, 2 records", bytes.Join(lines, []byte("\n")))
	}
	marker := parseLine(t, lines[5])
	if marker.Event != EventTorn || marker.Torn != lineHash(fragment) || marker.Prev != lineHash(lines[3]) || marker.Seq != 5 ||
		!contains(marker.Detail, "the previous writer stopped in the middle of a record") {
		t.Errorf("marker = %+v; want a torn-tail record with the fragment's hash, chained to line 4", marker)
	}
	rep = mustVerify(t, path)
	requireOK(t, rep)
	if len(rep.Torn) != 1 || rep.Torn[0].Line != 5 || rep.Records != 7 {
		t.Errorf("after reopen: %+v; want line 5 reported, 7 records", rep)
	}

	t.Run("the kept fragment is covered by the chain", func(t *testing.T) {
		edited := slices.Clone(lines)
		edited[4] = bytes.Replace(edited[4], []byte("time"), []byte("TIME"), 1)
		p := filepath.Join(t.TempDir(), "audit.jsonl")
		writeLines(t, p, edited)
		rep := mustVerify(t, p)
		if rep.Break == nil || rep.Break.Line != 5 || rep.Break.Kind != KindEdited {
			t.Errorf("got %v, want line 5 edited", rep.Break)
		}
	})
	t.Run("removing the fragment is found", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.jsonl")
		writeLines(t, p, slices.Delete(slices.Clone(lines), 4, 5))
		rep := mustVerify(t, p)
		if rep.Break == nil || rep.Break.Line != 5 || rep.Break.Kind != KindRemoved {
			t.Errorf("got %v, want line 5 removed", rep.Break)
		}
	})
}

func TestTornHeaderIsAcknowledgedByTheNextHeader(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(nil)
	o.MaxSize = 1500
	path := writeLog(t, dir, 6, o)
	// A crash while writing the first line of a fresh file after rotation.
	files, _ := Files(path)
	os.Remove(path)
	os.WriteFile(path, []byte(`{"time":"2025-03-01T12:00:07Z","seq":`), 0o600)
	l := mustOpen(t, path, o)
	mustAppend(t, l, signRec(7))
	l.Close()
	lines := readLines(t, path)
	if hdr := parseLine(t, lines[1]); hdr.Event != EventHeader || hdr.Torn != lineHash(lines[0]) {
		t.Fatalf("line 2 = %s; want a header acknowledging the torn line 1", lines[1])
	}
	rep := mustVerify(t, files...)
	requireOK(t, rep)
	if len(rep.Torn) != 1 || rep.Torn[0].File != path || rep.Torn[0].Line != 1 {
		t.Errorf("report %+v; want %s:1 reported torn", rep, path)
	}
}

func TestMissingCurrentFileIsNoted(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(nil)
	o.MaxSize = 1500
	path := writeLog(t, dir, 6, o)
	os.Remove(path)
	logs := &logBuffer{}
	o.Logger = testOptions(logs).Logger
	l := mustOpen(t, path, o)
	mustAppend(t, l, signRec(7))
	l.Close()
	hdr := parseLine(t, readLines(t, path)[0])
	if hdr.Detail != "audit.jsonl was missing (deleted, or a crash during rotation); this file continues the chain of audit.jsonl.1" {
		t.Errorf("header detail = %q", hdr.Detail)
	}
	if !contains(logs.String(), "audit log was missing") {
		t.Errorf("no warning: %q", logs.String())
	}
}

func TestVerifyErrors(t *testing.T) {
	if _, err := Verify(); err == nil {
		t.Error("Verify() with no files succeeded")
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("Verify(missing file) succeeded")
	}
}
