package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// Defaults for Options.
const (
	DefaultMaxSize      = 64 << 20
	DefaultKeep         = 5
	DefaultSyncInterval = time.Second
	DefaultMinRetention = 24 * time.Hour
	DefaultMinFree      = 256 << 20
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit log is closed")

var errLocked = errors.New("locked by another process")

// Options configure a Log. Zero values mean the defaults.
type Options struct {
	// MaxSize is the size at which the file is rotated (default 64 MiB).
	MaxSize int64
	// Keep is how many rotated files are kept whatever their age:
	// audit.jsonl.1 … .Keep (default 5). Older files are deleted too once
	// their newest record is older than MinRetention.
	Keep int
	// MinRetention is how long records are kept even beyond Keep files, so
	// that a flood of records cannot rotate an attack's records away
	// (default 24 h; negative: keep by count only). Only a nearly full disk
	// (less than MinFree free) overrides it.
	MinRetention time.Duration
	// MinFree is the free space on the log's file system below which
	// rotation deletes files beyond Keep although they are younger than
	// MinRetention (default 256 MiB).
	MinFree int64
	// OnRetentionOverride, if set, is called after a rotation deleted
	// records younger than MinRetention for lack of space, with the log's
	// Health; from the appending goroutine, with no lock held.
	OnRetentionOverride func(Health)
	// SyncInterval bounds how long a written record may wait for fsync
	// (default 1 s).
	SyncInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger gets warnings: torn tails, failed fsyncs, rotation trouble
	// (default slog.Default()).
	Logger *slog.Logger

	// freeSpace measures the log's file system (a seam for tests; default
	// statfs).
	freeSpace func(dir string) (diskSpace, error)
}

// file is the part of *os.File a Log writes through (a seam for tests).
type file interface {
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (fs.FileInfo, error)
}

// Log appends records to one audit file, rotating it by size. It is safe
// for concurrent use.
type Log struct {
	path     string
	cpPath   string // the checkpoint file: what rotation deleted
	o        Options
	log      *slog.Logger
	openFile func(path string) (file, error)

	mu         sync.Mutex
	f          file // nil: reopen (and rescan) the path before the next write
	size       int64
	seq        uint64 // seq of the last line in the chain
	lastHash   string // hash of the last line in the chain
	needHeader bool   // the current file has no header yet
	headerNote string // Detail for that header
	torn       *torn  // a torn line the next write must acknowledge
	dirty      bool   // written since the last fsync
	syncErr    error  // the last fsync failed; refuse until one succeeds
	retryAt    time.Time
	closed     bool
	mirror     *mirror       // copies to the system log (SetMirror); nil: none
	buf        bytes.Buffer  // the lines of one append, reused
	enc        *json.Encoder // writes into buf, as marshalLine does

	// Retention state for Health.
	files             int
	oldestKept        time.Time
	overriddenAt      time.Time
	overriddenRecords uint64
	notifyOverride    bool // the last rotation overrode MinRetention: call OnRetentionOverride

	stop chan struct{}
	done chan struct{}
	bg   sync.WaitGroup // fsyncs of rotated files
}

// torn describes bytes after the last newline of the current file.
type torn struct {
	hash string
	off  int64
	n    int64
}

// Open opens (creating if needed) the audit log at path and continues its
// chain. The directory is created 0700 and the file 0600. A torn last line is
// reported to o.Logger and acknowledged in the chain by the next Append.
// Only one process may have a log open: a second Open fails.
func Open(path string, o Options) (*Log, error) {
	return open(path, o, openOSFile)
}

func open(path string, o Options, opener func(string) (file, error)) (*Log, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinRetention == 0 {
		o.MinRetention = DefaultMinRetention
	}
	if o.MinFree <= 0 {
		o.MinFree = DefaultMinFree
	}
	if o.freeSpace == nil {
		o.freeSpace = statFreeSpace
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create audit log directory: %w", err)
	}
	l := &Log{path: path, cpPath: CheckpointPath(path), o: o, log: o.Logger, openFile: opener,
		stop: make(chan struct{}), done: make(chan struct{})}
	l.enc = newLineEncoder(&l.buf)
	if err := l.reopen(); err != nil {
		return nil, err
	}
	l.adoptGap()
	l.countFiles()
	go l.syncLoop()
	return l, nil
}

// ErrInUse is returned by Open when another process writes the log: a
// hash chain has one writer.
var ErrInUse = errors.New("audit log in use")

// openOSFile opens path for appending and locks it.
func openOSFile(path string) (file, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err // *fs.PathError: "open PATH: is a directory"
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, hint.Wrap(fmt.Errorf("audit log %s is in use by another process (another safe-agent?): %w", path, ErrInUse),
				"give each agent its own audit log")
		}
		return nil, fmt.Errorf("lock audit log %s: %w", path, err)
	}
	return f, nil
}

// reopen opens l.path and sets the chain state from what is on disk: the
// last line of the file, or of the rotated file before it.
func (l *Log) reopen() error {
	_, statErr := os.Lstat(l.path)
	existed := statErr == nil
	f, err := l.openFile(l.path)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log %s: %w", l.path, err)
	}
	var size int64
	if fi.Mode().IsRegular() {
		size = fi.Size()
		if fi.Mode().Perm()&0o077 != 0 {
			l.log.Warn("audit log was readable by others; making it 0600", "path", l.path, "mode", fi.Mode().Perm().String())
			if c, ok := f.(interface{ Chmod(fs.FileMode) error }); ok {
				if err := c.Chmod(0o600); err != nil {
					l.log.Warn("chmod audit log", "path", l.path, "err", err)
				}
			}
		}
	}
	var t fileTail
	if size > 0 {
		if t, err = readTail(l.path, size); err != nil {
			f.Close()
			return fmt.Errorf("read the end of audit log %s: %w", l.path, err)
		}
	}
	l.f, l.size, l.torn, l.headerNote = f, size, nil, ""
	if t.haveLine {
		l.seq, l.lastHash, l.needHeader = t.lastSeq, t.lastHash, false
		if !t.lastValid {
			l.log.Warn("the last line of the audit log is not a valid record; continuing the chain after it (safe-agent audit verify will report it)", "path", l.path)
		}
	} else {
		prev := l.path + ".1"
		pt, ok, err := tailOfFile(prev)
		if err != nil {
			l.f = nil
			f.Close()
			return fmt.Errorf("read the end of rotated audit log %s: %w", prev, err)
		}
		l.seq, l.lastHash, l.needHeader = pt.lastSeq, pt.lastHash, true
		if ok && !existed {
			l.headerNote = fmt.Sprintf("%s was missing (deleted, or a crash during rotation); this file continues the chain of %s", filepath.Base(l.path), filepath.Base(prev))
			l.log.Warn("audit log was missing; continuing the chain of the rotated file", "path", l.path, "rotated", prev)
		}
	}
	if t.fragStart < size {
		l.torn = &torn{hash: t.fragHash, off: t.fragStart, n: size - t.fragStart}
		l.log.Warn("audit log ends in an incomplete record (the agent stopped while writing it); keeping it and continuing the chain after it",
			"path", l.path, "offset", l.torn.off, "bytes", l.torn.n)
	}
	return nil
}

// Append writes r as one line before returning. It fills Time (if zero),
// Seq and Prev; Event must be set. The line reaches the kernel in one
// write(2); fsync follows within Options.SyncInterval. An error means the
// record is not in the log: the caller must not act as if it were (the
// agent refuses the signature).
func (l *Log) Append(r Record) error {
	err := l.append(r)
	if l.o.OnRetentionOverride != nil && l.takeOverride() {
		l.o.OnRetentionOverride(l.Health())
	}
	return err
}

// takeOverride reports (once) that a rotation deleted records younger
// than MinRetention.
func (l *Log) takeOverride() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.notifyOverride
	l.notifyOverride = false
	return n
}

// append is Append under the lock.
func (l *Log) append(r Record) error {
	switch r.Event {
	case "":
		return errors.New("audit record has no event")
	case EventHeader, EventTorn:
		return fmt.Errorf("audit event %q is reserved for the log itself", r.Event)
	}
	r.Seq, r.Prev, r.LogID, r.Torn, r.Checkpoint = 0, "", "", "", ""
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.syncErr != nil {
		return fmt.Errorf("audit log %s: the last fsync failed (%w); records cannot be made durable", l.path, l.syncErr)
	}
	if r.Time.IsZero() {
		r.Time = l.o.Now()
	}
	r.Time = r.Time.UTC()
	if l.f == nil {
		if err := l.reopen(); err != nil {
			return err
		}
	}

	// The common case encodes the record once, into the log's own buffer,
	// and hashes it there.
	l.buf.Reset()
	r.Seq, r.Prev = l.seq+1, l.lastHash
	if err := l.encode(&r); err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	if l.torn == nil && !l.needHeader && l.size+int64(l.buf.Len()) > l.o.MaxSize &&
		(l.retryAt.IsZero() || !l.o.Now().Before(l.retryAt)) {
		if err := l.rotate(); err != nil {
			return err
		}
	}

	var first *Record
	switch {
	case l.needHeader:
		first = &Record{Time: r.Time, Event: EventHeader, LogID: newLogID(), Detail: l.headerNote,
			Checkpoint: filepath.Base(l.cpPath)}
		if first.Detail == "" {
			first.Detail = "safe-agent audit log"
		}
	case l.torn != nil:
		first = &Record{Time: r.Time, Event: EventTorn, Detail: fmt.Sprintf(
			"the previous writer stopped in the middle of a record: %d bytes at offset %d of %s have no newline; they are kept and skipped by the chain",
			l.torn.n, l.torn.off, filepath.Base(l.path))}
	}
	seq, prev := l.seq+1, ""
	if first == nil {
		prev = lineHash(bytes.TrimSuffix(l.buf.Bytes(), []byte{'\n'}))
	} else {
		var err error
		if seq, prev, err = l.encodeAfter(first, &r); err != nil {
			return err
		}
	}

	n, err := l.f.Write(l.buf.Bytes())
	if l.buf.Cap() > maxKeptBuf {
		l.buf = bytes.Buffer{} // one huge record: do not keep its buffer
	}
	if err != nil {
		if n > 0 {
			// Take the partial line back out; if that fails, the file
			// ends in a torn line: rescan it before the next write.
			if terr := l.f.Truncate(l.size); terr != nil {
				l.log.Error("cannot remove a partly written audit record", "path", l.path, "err", terr)
				l.f.Close()
				l.f = nil
			}
		}
		return fmt.Errorf("write audit log %s: %w", l.path, err)
	}
	l.size += int64(n)
	l.seq, l.lastHash = seq, prev
	l.needHeader, l.headerNote, l.torn = false, "", nil
	l.dirty = true
	if l.oldestKept.IsZero() {
		l.oldestKept = r.Time // the first record of a new log
	}
	l.mirror.send(first, &r)
	return nil
}

// encode appends rec's line and its newline to l.buf. Called with l.mu
// held.
func (l *Log) encode(rec *Record) error {
	if b, ok := appendRecord(l.buf.AvailableBuffer(), rec); ok {
		l.buf.Write(append(b, '\n'))
		return nil
	}
	return l.enc.Encode(rec)
}

// maxKeptBuf bounds the encoding buffer the log keeps between appends.
const maxKeptBuf = 64 << 10

// encodeAfter encodes first (a header or torn-tail record the log writes
// itself) and then r into l.buf, chained from the last line; it returns
// the chain's new seq and hash. Called with l.mu held.
func (l *Log) encodeAfter(first, r *Record) (seq uint64, prev string, err error) {
	l.buf.Reset()
	if l.torn != nil {
		l.buf.WriteByte('\n') // end the torn bytes so that they form a line of their own
		first.Torn = l.torn.hash
	}
	seq, prev = l.seq, l.lastHash
	for _, rec := range []*Record{first, r} {
		seq++
		rec.Seq, rec.Prev = seq, prev
		start := l.buf.Len()
		if err := l.encode(rec); err != nil {
			return 0, "", fmt.Errorf("encode audit record: %w", err)
		}
		prev = lineHash(bytes.TrimSuffix(l.buf.Bytes()[start:], []byte{'\n'}))
	}
	return seq, prev, nil
}

// rotate renames path → path.1 (.1 → .2, …) and starts a new file; the old
// one is fsynced in the background. Before that, prune deletes the oldest
// rotated files that have outlived Keep and MinRetention. Called with l.mu
// held. If a deletion or rename fails the current file stays in use
// (rotation is retried a minute later); if the new file cannot be created
// the error is returned.
func (l *Log) rotate() error {
	fail := func(err error) error {
		l.log.Warn("cannot rotate the audit log; writing on in the current file", "path", l.path, "err", err)
		l.retryAt = l.o.Now().Add(time.Minute)
		return nil
	}
	files, err := Files(l.path)
	if err != nil {
		return fail(err)
	}
	// files is oldest first: p.N … p.1, then p itself (if it exists).
	rotated := slices.DeleteFunc(files, func(p string) bool { return rotatedIndex(l.path, p) == 0 })
	rotated, err = l.prune(rotated)
	if err != nil {
		return fail(err)
	}
	for _, p := range rotated { // highest index first: no rename overwrites a file
		dst := fmt.Sprintf("%s.%d", l.path, rotatedIndex(l.path, p)+1)
		if err := os.Rename(p, dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fail(err)
	}
	syncDir(filepath.Dir(l.path))
	l.files = len(rotated) + 2 // the rotated ones, the retired one, the new one
	if len(rotated) > 0 {
		if r, ok := firstRecordOf(fmt.Sprintf("%s.%d", l.path, rotatedIndex(l.path, rotated[0])+1)); ok {
			l.oldestKept = r.Time
		}
	} else if r, ok := firstRecordOf(l.path + ".1"); ok {
		l.oldestKept = r.Time
	}
	// fsync the retired file off the request path: a 64 MiB file can take
	// a few hundred milliseconds. Close waits for it.
	old := l.f
	l.f = nil
	l.bg.Go(func() {
		err := old.Sync()
		if cerr := old.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			l.log.Error("fsync rotated audit log failed; refusing new records until an fsync succeeds", "path", l.path+".1", "err", err)
			l.mu.Lock()
			l.syncErr, l.dirty = err, true
			l.mu.Unlock()
		}
	})
	f, err := l.openFile(l.path)
	if err != nil {
		return fmt.Errorf("start a new audit log after rotation: %w", err)
	}
	l.f, l.size, l.needHeader = f, 0, true
	return nil
}

// prune deletes, oldest first, the rotated files (given oldest first) that
// would be beyond Keep after this rotation and whose newest record is older
// than MinRetention; younger ones only when the file system has less than
// MinFree left. Each deletion is written to the checkpoint file first. It
// returns the files that remain. Called with l.mu held.
func (l *Log) prune(rotated []string) ([]string, error) {
	now := l.o.Now()
	var space *diskSpace
	var notes []string
	for len(rotated) > 0 {
		p := rotated[0]
		if rotatedIndex(l.path, p) < l.o.Keep {
			break
		}
		s, err := spanOf(p)
		if err != nil {
			return rotated, err
		}
		age := now.Sub(s.lastTime)
		reason := fmt.Sprintf("beyond the %d newest rotated files and older than %s", l.o.Keep, formatRetention(l.o.MinRetention))
		young := l.o.MinRetention > 0 && age < l.o.MinRetention
		if young {
			if space == nil {
				sp, err := l.o.freeSpace(filepath.Dir(l.path))
				if err != nil {
					l.log.Debug("cannot measure free space for the audit log; keeping records by age", "err", err)
					break
				}
				space = &sp
			}
			if space.free >= uint64(l.o.MinFree) {
				break // this file and every newer one are kept
			}
			reason = fmt.Sprintf("free space low (%s, below %s): deleted although its newest record is only %s old (retention %s)",
				formatBytes(space.free), formatBytes(uint64(l.o.MinFree)), age.Round(time.Second), formatRetention(l.o.MinRetention))
		}
		e := entryFor(p, s, now, reason)
		if err := appendCheckpoint(l.cpPath, e); err != nil {
			return rotated, err
		}
		if err := os.Remove(p); err != nil {
			return rotated, fmt.Errorf("delete old audit log: %w", err)
		}
		if young {
			l.log.Warn("disk nearly full: deleted audit records younger than the retention window",
				"path", p, "records", e.Records, "first_seq", e.FirstSeq, "last_seq", e.LastSeq,
				"newest_age", age.Round(time.Second), "free_bytes", space.free, "min_free", l.o.MinFree)
			l.overriddenAt, l.overriddenRecords, l.notifyOverride = now, l.overriddenRecords+e.Records, true
			notes = append(notes, fmt.Sprintf("%s (records %d to %d)", filepath.Base(p), e.FirstSeq, e.LastSeq))
		}
		rotated = rotated[1:]
	}
	if len(notes) > 0 {
		// Say it in the chain too: the next file's header carries it.
		l.headerNote = fmt.Sprintf("safe-agent audit log; free space was low (%s), so rotation deleted %s although younger than %s; see %s",
			formatBytes(space.free), strings.Join(notes, ", "), formatRetention(l.o.MinRetention), filepath.Base(l.cpPath))
	} else {
		l.headerNote = ""
	}
	return rotated, nil
}

// countFiles sets the file count and the oldest record's time for Health.
func (l *Log) countFiles() {
	files, err := Files(l.path)
	if err != nil || len(files) == 0 {
		return
	}
	l.files = len(files)
	if r, ok := firstRecordOf(files[0]); ok {
		l.oldestKept = r.Time
	}
}

// firstRecordOf is the first record of the file at p (false if none).
func firstRecordOf(p string) (Record, bool) {
	f, err := os.Open(p)
	if err != nil {
		return Record{}, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return Record{}, false // e.g. a symlink to /dev/full in a test
	}
	r, ok, err := firstRecord(f)
	return r, ok && err == nil
}

// adoptGap starts the checkpoint of a log whose oldest file continues a
// chain that is already gone, so that verify can tell that gap (left by a
// safe-agent that rotated without checkpoints) from one made later. It
// does so only when no checkpoint exists and no file of the log was written
// by a writer that kept one: if one was, the checkpoint was deleted, and
// the gap must stay visible.
func (l *Log) adoptGap() {
	if _, err := os.Lstat(l.cpPath); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	files, err := Files(l.path)
	if err != nil || len(files) == 0 {
		return
	}
	start, ok := firstRecordOf(files[0])
	if !ok || start.Seq <= 1 {
		return // the chain starts here, or nothing is known
	}
	for _, p := range files {
		if r, ok := firstRecordOf(p); ok && r.Checkpoint != "" {
			l.log.Error("the audit checkpoint is missing although this log kept one: the records before the oldest file cannot be accounted for (safe-agent audit verify fails)",
				"path", l.cpPath, "oldest", files[0], "first_seq", start.Seq)
			return
		}
	}
	e := CheckpointEntry{Deleted: l.o.Now().UTC(), File: "before " + filepath.Base(files[0]),
		FirstSeq: 1, LastSeq: start.Seq - 1, LastHash: start.Prev, Records: start.Seq - 1,
		Reason:      "already missing when the checkpoint was started (rotated away by a safe-agent without checkpoints, or deleted)",
		Unaccounted: true}
	if err := appendCheckpoint(l.cpPath, e); err != nil {
		l.log.Warn("cannot start the audit checkpoint", "path", l.cpPath, "err", err)
		return
	}
	l.log.Warn("the oldest audit log file continues records that are gone; noted in the checkpoint as unaccounted",
		"path", files[0], "records", e.Records, "checkpoint", l.cpPath)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func newLogID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

// syncLoop fsyncs written records at least once per SyncInterval.
func (l *Log) syncLoop() {
	defer close(l.done)
	t := time.NewTicker(l.o.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.syncNow()
		}
	}
}

func (l *Log) syncNow() {
	l.mu.Lock()
	f, dirty := l.f, l.dirty
	l.dirty = false
	l.mu.Unlock()
	if !dirty || f == nil {
		return
	}
	err := f.Sync()
	if errors.Is(err, os.ErrClosed) {
		return // rotated (and synced) or closed meanwhile
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if l.syncErr == nil {
			l.log.Error("fsync audit log failed; refusing new records until it succeeds", "path", l.path, "err", err)
		}
		l.syncErr, l.dirty = err, true
		return
	}
	if l.syncErr != nil {
		l.log.Info("fsync audit log works again", "path", l.path)
		l.syncErr = nil
	}
}

// Close fsyncs and closes the file. Appends after Close return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	f := l.f
	l.f = nil
	m := l.mirror
	l.mirror = nil
	l.mu.Unlock()
	m.stop()
	close(l.stop)
	<-l.done
	l.bg.Wait()
	if f == nil {
		return nil
	}
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close audit log %s: %w", l.path, err)
	}
	return nil
}

// Path is the file the log writes to.
func (l *Log) Path() string { return l.path }
