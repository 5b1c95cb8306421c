package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func reasons(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Reason
	}
	return out
}

func reasonRange(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("reason %d", i))
	}
	return out
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func TestTailReadsLargeLogFromTheEnd(t *testing.T) {
	const n = 50_000
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// Write the file directly (fast, also under -race): the chain is not
	// what is under test here.
	var b bytes.Buffer
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		decision := "allowed"
		if i%3 == 0 {
			decision = "denied"
		}
		fmt.Fprintf(&b, `{"time":%q,"seq":%d,"event":"sign","decision":%q,"reason":"reason %d",`+
			`"key":{"fingerprint":"SHA256:8OqUHoM3tCzDQJ0XHtSmXgkSG0ZpFKWpbZRcFDIZDPo","type":"ssh-ed25519","comment":"work-laptop"},`+
			`"purpose":{"kind":"login","user":"deploy","data_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},`+
			`"path":[{"names":["jump.example"],"fingerprint":"SHA256:jumpjumpjump","forwarded":true},{"names":["db.internal"],"fingerprint":"SHA256:dbdbdbdb"}],`+
			`"client":{"pid":%d,"uid":1000,"exe":"/usr/bin/ssh","chain":"ssh (1234) ← bash (1000) ← sshd"},"prev":"0000000000000000000000000000000000000000000000000000000000000000"}`+"\n",
			t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339), i, decision, i, 1000+i)
	}
	b.WriteString(`{"time":"2025-03-02T00:00:00Z","seq":50001,"event":"si`) // torn tail
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("last ten", func(t *testing.T) {
		got, err := Tail(path, 10, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if want := reasonRange(n-9, n); !slices.Equal(reasons(got), want) {
			t.Errorf("got %v, want %v", reasons(got), want)
		}
	})
	t.Run("last ten denied", func(t *testing.T) {
		got, _ := Tail(path, 3, Filter{Decision: "denied"})
		if want := []string{"reason 49992", "reason 49995", "reason 49998"}; !slices.Equal(reasons(got), want) {
			t.Errorf("got %v, want %v", reasons(got), want)
		}
	})
	t.Run("since", func(t *testing.T) {
		got, _ := Tail(path, 0, Filter{Since: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).Add((n - 4) * time.Second)})
		if want := reasonRange(n-4, n); !slices.Equal(reasons(got), want) {
			t.Errorf("got %v, want %v", reasons(got), want)
		}
	})
	t.Run("reads only the end", func(t *testing.T) {
		f, _ := os.Open(path)
		defer f.Close()
		fi, _ := f.Stat()
		c := &countingReaderAt{r: f}
		lines := 0
		scanBackward(c, fi.Size(), func(line []byte, _, _ int64) bool { lines++; return lines < 10 })
		if c.n.Load() > scanBlock || fi.Size() < 10*scanBlock {
			t.Errorf("read %d of %d bytes for 10 lines; want one %d-byte block", c.n.Load(), fi.Size(), scanBlock)
		}
	})
}

func TestScanBackwardSplitsLinesExactly(t *testing.T) {
	long := strings.Repeat("x", scanBlock+10) // spans blocks
	for _, tc := range []struct {
		in   string
		want []string // last first
	}{
		{"", nil},
		{"torn", nil},
		{"a\n", []string{"a"}},
		{"a\nb\n", []string{"b", "a"}},
		{"a\nb\ntorn", []string{"b", "a"}},
		{"\n\n", []string{"", ""}},
		{"a\n" + long + "\nb\n", []string{"b", long, "a"}},
	} {
		var got []string
		err := scanBackward(strings.NewReader(tc.in), int64(len(tc.in)), func(line []byte, start, n int64) bool {
			if tc.in[start:start+n] != string(line) {
				t.Errorf("%q: line %q at %d+%d does not match the input", tc.in, line, start, n)
			}
			got = append(got, string(line))
			return true
		})
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("scanBackward(%.20q) = %.40q, %v; want %.40q", tc.in, got, err, tc.want)
		}
	}
}

func TestTailFollowsRotatedFiles(t *testing.T) {
	o := testOptions(nil)
	o.MaxSize, o.Keep = 2000, 20
	path := writeLog(t, t.TempDir(), 40, o)
	if files, _ := Files(path); len(files) < 4 {
		t.Fatalf("want several files, got %v", files)
	}
	got, err := Tail(path, 25, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if want := reasonRange(16, 40); !slices.Equal(reasons(got), want) {
		t.Errorf("got %v, want %v", reasons(got), want)
	}
	all, _ := Tail(path, 0, Filter{})
	if want := reasonRange(1, 40); !slices.Equal(reasons(all), want) {
		t.Errorf("all: got %v, want %v (no headers)", reasons(all), want)
	}
	hdrs, _ := Tail(path, 0, Filter{Events: []string{EventHeader}})
	files, _ := Files(path)
	if len(hdrs) != len(files) {
		t.Errorf("%d headers for %d files", len(hdrs), len(files))
	}
}

func TestTailOfMissingLog(t *testing.T) {
	_, err := Tail(filepath.Join(t.TempDir(), "audit.jsonl"), 10, Filter{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Tail = %v, want ErrNotExist", err)
	}
}

func TestFilterMatch(t *testing.T) {
	fwd := signRec(1) // path jump.example (forwarded) → db.internal, key work-laptop, prompted
	local := Record{Time: fwd.Time, Event: EventSign, Decision: DecisionDenied, Key: &Key{Fingerprint: "SHA256:abc", Comment: "Git-Signing"},
		Purpose: &Purpose{Kind: PurposeSSHSig, Namespace: "git"}}
	lock := Record{Event: EventLock}
	hdr := Record{Event: EventHeader}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	fwd.Time, local.Time = at, at.Add(time.Hour)
	fwd.Seq, local.Seq = 10, 11

	for _, tc := range []struct {
		name string
		f    Filter
		want []bool // fwd, local, lock, hdr
	}{
		{"zero filter hides headers", Filter{}, []bool{true, true, true, false}},
		{"key by comment, any case", Filter{Key: "git-sign"}, []bool{false, true, false, false}},
		{"key by fingerprint", Filter{Key: "SHA256:8OqUHoM3"}, []bool{true, false, false, false}},
		{"host substring", Filter{Host: "DB"}, []bool{true, false, false, false}},
		{"host glob", Filter{Host: "*.internal"}, []bool{true, false, false, false}},
		{"host glob needs whole name", Filter{Host: "db.*.x"}, []bool{false, false, false, false}},
		{"host fingerprint", Filter{Host: "SHA256:jumpjumpjump"}, []bool{true, false, false, false}},
		{"decision", Filter{Decision: "denied"}, []bool{false, true, false, false}},
		{"asked", Filter{Decision: "asked"}, []bool{true, false, false, false}},
		{"forwarded", Filter{Forwarded: true}, []bool{true, false, false, false}},
		{"since", Filter{Since: at.Add(time.Minute)}, []bool{false, true, false, false}},
		{"events", Filter{Events: []string{EventLock, EventHeader}}, []bool{false, false, true, true}},
		{"after seq", Filter{AfterSeq: 10}, []bool{false, true, false, false}},
	} {
		for i, r := range []Record{fwd, local, lock, hdr} {
			if got := tc.f.Match(r); got != tc.want[i] {
				t.Errorf("%s: record %d (%s): Match = %v, want %v", tc.name, i, r.Event, got, tc.want[i])
			}
		}
	}
}

func TestFollowSeesNewRecordsAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	o := testOptions(nil)
	o.MaxSize, o.Keep = 2000, 50
	l := mustOpen(t, path, o)
	defer l.Close()
	mustAppend(t, l, signRec(0)) // before Follow: not shown

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Follow(ctx, path, Filter{Events: []string{EventSign}}, func(r Record) {
			mu.Lock()
			got = append(got, r.Reason)
			mu.Unlock()
		})
	}()
	// Wait until Follow is reading: it shows a record appended after it started.
	waitFor(t, "Follow to start", func() bool {
		mustAppend(t, l, Record{Event: EventSign, Reason: "sync"})
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	got = nil
	mu.Unlock()
	for i := 1; i <= 30; i++ { // rotates several times
		mustAppend(t, l, signRec(i))
		if i%5 == 0 {
			time.Sleep(FollowInterval / 2)
		}
	}
	waitFor(t, "Follow to see 30 records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 30
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if files, _ := Files(path); len(files) < 3 {
		t.Errorf("no rotation happened: %v", files)
	}
	got = slices.DeleteFunc(got, func(s string) bool { return s == "sync" }) // late sync records
	if want := reasonRange(1, 30); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestFollowAfterSeqStartsThere(t *testing.T) {
	path := writeLog(t, t.TempDir(), 5, testOptions(nil)) // records have seq 2..6
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(3 * FollowInterval)
		cancel()
	}()
	if err := Follow(ctx, path, Filter{AfterSeq: 4}, func(r Record) { got = append(got, r.Reason) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"reason 4", "reason 5"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestFollowWaitsForTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Follow(ctx, path, Filter{}, func(r Record) { mu.Lock(); got = append(got, r.Reason); mu.Unlock() })
	}()
	time.Sleep(FollowInterval)
	writeLog(t, filepath.Dir(path), 2, testOptions(nil))
	waitFor(t, "two records", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	cancel()
	<-done
}

func TestFilesAndDefaultPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.jsonl")
	for _, name := range []string{"audit.jsonl", "audit.jsonl.1", "audit.jsonl.10", "audit.jsonl.2", "audit.jsonl.01", "audit.jsonl.x", "other.1"} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
	}
	got, err := Files(p)
	want := []string{p + ".10", p + ".2", p + ".1", p}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Files = %v, %v; want %v", got, err, want)
	}
	if got, _ := Files(filepath.Join(dir, "none", "audit.jsonl")); len(got) != 0 {
		t.Errorf("Files of a missing directory = %v", got)
	}

	t.Setenv("XDG_STATE_HOME", "/state")
	if got, _ := DefaultPath(); got != "/state/safe-agent/audit.jsonl" {
		t.Errorf("DefaultPath with XDG_STATE_HOME = %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "relative") // not absolute: ignored, as the spec says
	t.Setenv("HOME", "/home/u")
	if got, _ := DefaultPath(); got != "/home/u/.local/state/safe-agent/audit.jsonl" {
		t.Errorf("DefaultPath without XDG_STATE_HOME = %s", got)
	}
}
