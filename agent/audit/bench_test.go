package audit

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// reportLatency adds p50/p99/max per-Append latency metrics.
func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(d[len(d)-1].Nanoseconds()), "max-ns")
}

func benchLog(b *testing.B) *Log {
	b.Helper()
	// Defaults: 1 s fsync interval, 64 MiB rotation, on the real file system.
	l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAppend is one writer: the cost a sign request pays before its
// reply (encode + one write(2)), with background fsync running.
func BenchmarkAppend(b *testing.B) {
	l := benchLog(b)
	rec := signRec(1)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		t := time.Now()
		if err := l.Append(rec); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	reportLatency(b, lat)
}

// BenchmarkAppendParallel is many writers on one log (serialized by it).
func BenchmarkAppendParallel(b *testing.B) {
	l := benchLog(b)
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rec := signRec(2)
		var mine []time.Duration
		for pb.Next() {
			t := time.Now()
			if err := l.Append(rec); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	reportLatency(b, lat)
}

// BenchmarkAppendFsyncEach is the design not taken: fsync after every
// record. Compare with BenchmarkAppend.
func BenchmarkAppendFsyncEach(b *testing.B) {
	l := benchLog(b)
	rec := signRec(1)
	for b.Loop() {
		if err := l.Append(rec); err != nil {
			b.Fatal(err)
		}
		l.mu.Lock()
		err := l.f.Sync()
		l.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify measures Verify per record.
func BenchmarkVerify(b *testing.B) {
	o := Options{Now: testClock()}
	path := writeLog(b, b.TempDir(), 10_000, o)
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(path)
		if err != nil || rep.Break != nil {
			b.Fatal(err, rep.Break)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_001, "ns/record")
}
