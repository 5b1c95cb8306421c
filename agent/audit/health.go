package audit

import (
	"fmt"
	"path/filepath"
	"time"
)

// diskSpace is what statFreeSpace measures, in bytes.
type diskSpace struct{ free, total uint64 }

// Health is the state of the log's retention, for `safe-agent status` and
// notifications. See (*Log).Health.
type Health struct {
	// Files is how many files of the log are on disk (rotated ones and the
	// current one), as of the last Open or rotation.
	Files int
	// OldestKept is the time of the first record of the oldest file still
	// on disk (zero when unknown).
	OldestKept time.Time
	// FreeBytes is the space left for the log on its file system, measured
	// by this call; FreeKnown is false when it could not be measured.
	FreeBytes uint64
	FreeKnown bool
	// MinFree and MinRetention are the thresholds in force.
	MinFree      uint64
	MinRetention time.Duration
	// DiskLow is true when FreeBytes is below MinFree: the next rotation
	// deletes old files beyond Options.Keep even when their records are
	// younger than MinRetention.
	DiskLow bool
	// OverriddenAt is when rotation last deleted records younger than
	// MinRetention for lack of space (zero: not since Open), and
	// OverriddenRecords how many records it has deleted that way in total.
	OverriddenAt      time.Time
	OverriddenRecords uint64
	// Reason says in one sentence what is wrong; "" when nothing is.
	Reason string
}

// Health reports the log's retention state. It is cheap (a copy under the
// lock and one statfs) and safe to call at any time, also after Close.
func (l *Log) Health() Health {
	l.mu.Lock()
	h := Health{Files: l.files, OldestKept: l.oldestKept, MinFree: uint64(l.o.MinFree), MinRetention: l.o.MinRetention,
		OverriddenAt: l.overriddenAt, OverriddenRecords: l.overriddenRecords}
	l.mu.Unlock()
	sp, err := l.o.freeSpace(filepath.Dir(l.path))
	h.FreeBytes, h.FreeKnown = sp.free, err == nil
	h.DiskLow = h.FreeKnown && sp.free < h.MinFree
	var reason string
	if h.DiskLow {
		reason = fmt.Sprintf("only %s free on the audit log's file system (below %s): rotation deletes audit records younger than %s",
			formatBytes(h.FreeBytes), formatBytes(h.MinFree), formatRetention(h.MinRetention))
	}
	if !h.OverriddenAt.IsZero() {
		if reason != "" {
			reason += "; "
		}
		reason += fmt.Sprintf("%d audit records younger than %s were deleted for lack of space (last at %s)",
			h.OverriddenRecords, formatRetention(h.MinRetention), h.OverriddenAt.UTC().Format(time.RFC3339))
	}
	h.Reason = reason
	return h
}

func formatBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// formatRetention prints 24h0m0s as "24h".
func formatRetention(d time.Duration) string {
	if d > 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
