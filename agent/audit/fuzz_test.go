package audit

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
)

// FuzzParseRecord: any line either fails to parse or round-trips stably.
func FuzzParseRecord(f *testing.F) {
	r := signRec(1)
	line, _ := marshalLine(&r)
	f.Add(line)
	f.Add([]byte(`{"time":"2025-03-01T12:00:00Z","seq":1,"event":"header","detail":"safe-agent audit log","log_id":"00","prev":""}`))
	f.Add([]byte(`{"event":"sign","time":"2025-03-01T12:00:00+23:59","seq":18446744073709551615,"path":[{"names":null}],"prev":"\u00e9\ud800"}`))
	f.Add([]byte(`{"event":"x","key":{},"purpose":{},"client":{"pid":-1},"prompt":{"wait_ms":-9}}`))
	f.Add([]byte("{\"event\":\"\xff\xfe\"}\n"))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[1]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord(data)
		if err != nil {
			return
		}
		line, err := marshalLine(&r)
		if err != nil {
			t.Fatalf("a parsed record does not encode: %v", err)
		}
		r2, err := ParseRecord(line)
		if err != nil {
			t.Fatalf("an encoded record does not parse: %v\n%s", err, line)
		}
		line2, _ := marshalLine(&r2)
		if !bytes.Equal(line, line2) {
			t.Fatalf("not stable:\n%s\n%s", line, line2)
		}
	})
}

var (
	validLogOnce sync.Once
	validLog     []byte
	tornLog      []byte
)

// seedLogs builds a valid log and one with an acknowledged torn line.
func seedLogs(tb testing.TB) ([]byte, []byte) {
	validLogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "audit-fuzz")
		if err != nil {
			tb.Fatal(err)
		}
		defer os.RemoveAll(dir)
		path := writeLog(tb, dir, 5, testOptions(nil))
		validLog, _ = os.ReadFile(path)
		f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		f.WriteString(`{"time":"2025-03-01T12:00:06Z","seq":7,"ev`)
		f.Close()
		l := mustOpen(tb, path, testOptions(nil))
		mustAppend(tb, l, signRec(6))
		l.Close()
		tornLog, _ = os.ReadFile(path)
	})
	return validLog, tornLog
}

// FuzzVerify: Verify never panics, and when it finds nothing wrong every
// line is a record and seq runs without gaps.
func FuzzVerify(f *testing.F) {
	valid, torn := seedLogs(f)
	f.Add(valid, 0)
	f.Add(torn, 0)
	f.Add(valid, len(valid)/2)
	f.Add(append(bytes.Clone(valid), `{"event":"sign"`...), 0)
	f.Add([]byte("\n\n{}\n"), 1)
	f.Add([]byte(`{"event":"header","seq":1,"prev":""}`+"\n"+`{"event":"torn-tail","seq":2,"torn":"x","prev":""}`+"\n"), 0)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		// In memory: file I/O per input slows fuzzing a hundredfold.
		parts := [][]byte{data}
		if split > 0 && split < len(data) {
			parts = [][]byte{data[:split], data[split:]}
		}
		var names []string
		for i := range parts {
			names = append(names, strconv.Itoa(i))
		}
		rep, err := verify(names, func(name string) (io.ReadCloser, error) {
			i, _ := strconv.Atoi(name)
			return io.NopCloser(bytes.NewReader(parts[i])), nil
		}, nil)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if rep.Break != nil || len(rep.Torn) > 0 {
			return
		}
		var seq uint64
		n := 0
		for i, p := range parts {
			if len(p) > 0 && p[len(p)-1] != '\n' {
				t.Fatalf("file %d ends without a newline and nothing was reported", i)
			}
			for j, line := range bytes.Split(bytes.TrimSuffix(p, []byte("\n")), []byte("\n")) {
				if len(p) == 0 {
					break
				}
				r, err := ParseRecord(line)
				if err != nil {
					t.Fatalf("file %d line %d passed but does not parse: %v", i, j+1, err)
				}
				if (j == 0) != (r.Event == EventHeader) {
					t.Fatalf("file %d line %d: event %q passed", i, j+1, r.Event)
				}
				if n > 0 && r.Seq != seq+1 {
					t.Fatalf("file %d line %d: seq %d after %d passed", i, j+1, r.Seq, seq)
				}
				seq = r.Seq
				n++
			}
		}
		if n != rep.Records {
			t.Fatalf("%d lines, report says %d records", n, rep.Records)
		}
	})
}

// FuzzVerifyTamper: changing any one byte of a valid log, anywhere before
// its last line, is always found.
func FuzzVerifyTamper(f *testing.F) {
	valid, torn := seedLogs(f)
	for _, off := range []uint{0, 1, 10, 100, 500, 1000, 2000} {
		f.Add(false, off, byte('x'))
		f.Add(true, off, byte('\n'))
	}
	f.Add(false, uint(len(valid)/2), byte('}'))
	f.Fuzz(func(t *testing.T, useTorn bool, off uint, b byte) {
		base := valid
		if useTorn {
			base = torn
		}
		lastLine := bytes.LastIndexByte(base[:len(base)-1], '\n') + 1
		i := int(off % uint(lastLine))
		if base[i] == b {
			return
		}
		data := bytes.Clone(base)
		data[i] = b
		rep, err := verify([]string{"audit.jsonl"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Break == nil {
			t.Fatalf("byte %d changed from %q to %q: not found (report %+v)", i, base[i], b, rep)
		}
	})
}
