package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxCheckpointLines bounds the checkpoint file (about 400 bytes a line):
// when it is exceeded the oldest lines are merged into one, which still
// accounts for every record they covered.
const maxCheckpointLines = 1000

// CheckpointEntry is one line of the checkpoint file: the chain of a run of
// deleted files (one file, unless older lines were merged to keep the file
// small). FirstPrev and LastHash are what the chain passes through before
// and after the deleted records, so consecutive entries link up, and the
// last one links to the header of the oldest file still kept.
type CheckpointEntry struct {
	Deleted   time.Time `json:"deleted"`          // when the (newest) file was deleted
	File      string    `json:"file"`             // its name when it was deleted
	LogID     string    `json:"log_id,omitempty"` // its header's log_id
	Files     int       `json:"files"`            // deleted files this line stands for
	FirstSeq  uint64    `json:"first_seq"`
	FirstPrev string    `json:"first_prev"` // the hash the first record chains from ("" at the start of the chain)
	FirstTime time.Time `json:"first_time"`
	LastSeq   uint64    `json:"last_seq"`
	LastHash  string    `json:"last_hash"` // hash of the last line deleted: the next file's header prev
	LastTime  time.Time `json:"last_time"`
	Records   uint64    `json:"records"` // LastSeq - FirstSeq + 1
	Reason    string    `json:"reason"`
	// Unaccounted marks records that were already gone when the checkpoint
	// was started (rotated away by a safe-agent without checkpoints): the
	// line records that they are missing, it cannot vouch for them.
	Unaccounted bool `json:"unaccounted,omitempty"`
}

// CheckpointPath is the checkpoint file of the log at logPath.
func CheckpointPath(logPath string) string { return logPath + ".checkpoint" }

// CheckpointFor is the checkpoint file of the log that file belongs to:
// audit.jsonl.3 and audit.jsonl both give audit.jsonl.checkpoint.
func CheckpointFor(file string) string {
	if i := strings.LastIndexByte(file, '.'); i > 0 {
		if n, err := strconv.Atoi(file[i+1:]); err == nil && n >= 1 && strconv.Itoa(n) == file[i+1:] {
			file = file[:i]
		}
	}
	return CheckpointPath(file)
}

// ReadCheckpoint parses the checkpoint file at path. A missing file gives
// no entries and an error wrapping fs.ErrNotExist. A line that does not
// parse gives the entries before it and an error naming its line.
func ReadCheckpoint(path string) ([]CheckpointEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCheckpoint(b)
}

// checkpointLineError names the line of the checkpoint file that does not parse.
type checkpointLineError struct {
	line int
	err  error
}

func (e *checkpointLineError) Error() string {
	return fmt.Sprintf("line %d: %v", e.line, e.err)
}

func parseCheckpoint(b []byte) ([]CheckpointEntry, error) {
	var out []CheckpointEntry
	for i, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			break // after the last newline
		}
		if line[len(line)-1] != '\n' {
			return out, &checkpointLineError{i + 1, errors.New("incomplete line (no newline)")}
		}
		var e CheckpointEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return out, &checkpointLineError{i + 1, fmt.Errorf("not a checkpoint entry: %w", err)}
		}
		out = append(out, e)
	}
	return out, nil
}

// mergeOldest merges the oldest entries so that at most max remain.
func mergeOldest(es []CheckpointEntry, max int) []CheckpointEntry {
	if len(es) <= max {
		return es
	}
	n := len(es) - max + 1 // entries merged into one
	m := es[n-1]
	m.FirstSeq, m.FirstPrev, m.FirstTime = es[0].FirstSeq, es[0].FirstPrev, es[0].FirstTime
	m.LogID, m.Files, m.Records = "", 0, 0
	for _, e := range es[:n] {
		m.Files += e.Files
		m.Records += e.Records
		m.Unaccounted = m.Unaccounted || e.Unaccounted
	}
	m.File = fmt.Sprintf("%d files", m.Files)
	m.Reason = "older lines merged to keep the checkpoint small"
	return append([]CheckpointEntry{m}, es[n:]...)
}

// appendCheckpoint adds e to the checkpoint file at path, atomically (a
// temporary file, fsynced, renamed over it, the directory fsynced). A line
// already there for the same records is not repeated: a crash between
// writing the checkpoint and deleting the file leaves it, and the file is
// deleted on the next rotation. A checkpoint that does not parse is kept as
// it is, with the line added after it: it is evidence, not ours to repair.
func appendCheckpoint(path string, e CheckpointEntry) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read audit checkpoint: %w", err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit checkpoint: %w", err)
	}
	var out []byte
	if es, perr := parseCheckpoint(old); perr == nil {
		if len(es) > 0 && es[len(es)-1].LastHash == e.LastHash && es[len(es)-1].LastSeq == e.LastSeq {
			return nil
		}
		var b bytes.Buffer
		for _, x := range mergeOldest(append(es, e), maxCheckpointLines) {
			if err := writeJSONLine(&b, x); err != nil {
				return err
			}
		}
		out = b.Bytes()
	} else {
		if len(old) > 0 && old[len(old)-1] != '\n' {
			old = append(old, '\n')
		}
		out = append(append(old, line...), '\n')
	}
	return writeFileAtomic(path, out)
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode audit checkpoint: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write audit checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write audit checkpoint %s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// fileSpan is what a checkpoint needs to know about one log file: where
// its part of the chain starts and ends.
type fileSpan struct {
	start     Record // the first record of the file (normally its header)
	lastSeq   uint64
	lastHash  string
	lastTime  time.Time // time of the newest record; the file's mtime if none parses
	haveStart bool
}

// spanOf reads the first records and the end of the file at p.
func spanOf(p string) (fileSpan, error) {
	var s fileSpan
	f, err := os.Open(p)
	if err != nil {
		return s, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return s, err
	}
	if s.start, s.haveStart, err = firstRecord(f); err != nil {
		return s, fmt.Errorf("read %s: %w", p, err)
	}
	t, err := readTail(p, fi.Size())
	if err != nil {
		return s, fmt.Errorf("read the end of %s: %w", p, err)
	}
	s.lastSeq, s.lastHash, s.lastTime = t.lastSeq, t.lastHash, t.lastTime
	if s.lastTime.IsZero() {
		s.lastTime = fi.ModTime()
	}
	return s, nil
}

// firstRecord is the first line of r that parses, looking at two lines at
// most (a torn first line is followed by the header that acknowledges it).
func firstRecord(r io.Reader) (Record, bool, error) {
	br := bufio.NewReaderSize(r, scanBlock)
	for range 2 {
		line, err := readBoundedLine(br)
		if len(line) > 0 {
			if rec, perr := ParseRecord(line); perr == nil {
				return rec, true, nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Record{}, false, nil
			}
			return Record{}, false, err
		}
	}
	return Record{}, false, nil
}

// readBoundedLine reads one line of at most maxLine bytes; a longer one
// is an error (a Log never writes one).
func readBoundedLine(br *bufio.Reader) ([]byte, error) {
	var keep []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(keep)+len(chunk) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		keep = append(keep, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return keep, err
		}
	}
}

// entryFor describes the deletion of the file at p.
func entryFor(p string, s fileSpan, now time.Time, reason string) CheckpointEntry {
	e := CheckpointEntry{Deleted: now.UTC(), File: filepath.Base(p), LogID: s.start.LogID, Files: 1,
		FirstSeq: s.start.Seq, FirstPrev: s.start.Prev, FirstTime: s.start.Time,
		LastSeq: s.lastSeq, LastHash: s.lastHash, LastTime: s.lastTime.UTC(), Reason: reason}
	if e.LastSeq >= e.FirstSeq && e.FirstSeq > 0 {
		e.Records = e.LastSeq - e.FirstSeq + 1
	}
	return e
}
