package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Kind names what is wrong at a Finding.
type Kind string

// Kinds of findings. Only KindTorn is reported without breaking the chain.
const (
	KindEdited    Kind = "edited"
	KindRemoved   Kind = "removed"
	KindReordered Kind = "reordered"
	KindInserted  Kind = "inserted by hand"
	KindAppended  Kind = "appended by hand"
	KindTruncated Kind = "truncated mid-record"
	KindTorn      Kind = "torn tail"
)

// Finding is a place in the log and what is wrong there.
type Finding struct {
	File   string
	Line   int // 1-based
	Kind   Kind
	Detail string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Kind, f.Detail)
}

// Report is the result of Verify.
type Report struct {
	Files   int    // files read
	Records int    // lines that verified, headers included
	First   uint64 // seq of the first line verified
	Last    uint64 // seq of the last line verified
	// LastHash is the hash of the last line verified: note it elsewhere and
	// a later Verify whose chain no longer reaches it shows lost records.
	LastHash string
	// Continues is true when the first file's header chains to an earlier
	// file that was not given (rotated away): nothing before it is checked
	// by Verify; VerifyLog and VerifyWithCheckpoint check that the
	// checkpoint accounts for it.
	Continues bool
	// FirstPrev is the prev of the first line verified: the hash of the
	// record before it, "" at the start of the chain.
	FirstPrev string
	// Checkpoint describes the records before the first file, as the
	// checkpoint accounts for them; nil when nothing is missing before it
	// or only Verify ran.
	Checkpoint *CheckpointReport
	// Torn lists torn lines left by a crash mid-write: reported, not breaks.
	Torn []Finding
	// Break is the first place where the chain does not hold; nil if none.
	Break *Finding

	firstFile string // the file of the first line verified
}

// CheckpointReport is what the checkpoint says about the records that were
// rotated away before the oldest file.
type CheckpointReport struct {
	Path    string
	Records uint64 // records before the oldest file (seq 1 to Records)
	Files   int    // files deleted (0 for records already gone when the checkpoint started)
	// FirstDeleted and LastDeleted are when the first and the last of them
	// were deleted.
	FirstDeleted, LastDeleted time.Time
	// Unaccounted is how many of Records were already gone when the
	// checkpoint was started: a safe-agent without checkpoints rotated them
	// away (or they were deleted before); nothing vouches for them.
	Unaccounted uint64
	// Overlap counts lines for files that are still there (the writer
	// stopped between writing the checkpoint and deleting the file).
	Overlap int
}

// OK says whether the chain holds (torn tails allowed).
func (r Report) OK() bool { return r.Break == nil }

// vline is one line as Verify sees it.
type vline struct {
	file       string
	fileIdx    int
	lineNo     int
	firstLine  bool
	terminated bool
	size       int
	hash       string
	rec        *Record // nil when the line does not parse
	perr       error
}

// lineReader streams the lines of several files in order, with one line of
// lookahead.
type lineReader struct {
	paths  []string
	open   func(string) (io.ReadCloser, error)
	idx    int
	f      io.ReadCloser
	br     *bufio.Reader
	lineNo int
	peeked *vline
	done   bool
}

func (lr *lineReader) close() {
	if lr.f != nil {
		lr.f.Close()
	}
}

func (lr *lineReader) peek() (*vline, error) {
	if lr.peeked == nil && !lr.done {
		v, err := lr.read()
		if err != nil {
			return nil, err
		}
		lr.peeked = v
	}
	return lr.peeked, nil
}

func (lr *lineReader) next() (*vline, error) {
	v, err := lr.peek()
	lr.peeked = nil
	return v, err
}

func (lr *lineReader) read() (*vline, error) {
	for {
		if lr.f == nil {
			if lr.idx >= len(lr.paths) {
				lr.done = true
				return nil, nil
			}
			f, err := lr.open(lr.paths[lr.idx])
			if err != nil {
				return nil, err
			}
			lr.f, lr.br, lr.lineNo = f, bufio.NewReaderSize(f, scanBlock), 0
		}
		v, err := lr.readLine()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", lr.paths[lr.idx], err)
		}
		if v != nil {
			return v, nil
		}
		lr.f.Close()
		lr.f = nil
		lr.idx++
	}
}

// readLine reads one line of the current file; nil at its end.
func (lr *lineReader) readLine() (*vline, error) {
	h := sha256.New()
	var keep []byte
	long, any, terminated := false, false, false
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if len(chunk) > 0 {
			any = true
		}
		if err == nil {
			chunk, terminated = chunk[:len(chunk)-1], true
		} else if !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return nil, err
		}
		h.Write(chunk)
		if !long {
			if len(keep)+len(chunk) > maxLine {
				long, keep = true, nil
			} else {
				keep = append(keep, chunk...)
			}
		}
		if err == nil || errors.Is(err, io.EOF) {
			break
		}
	}
	if !any {
		return nil, nil
	}
	lr.lineNo++
	v := &vline{file: lr.paths[lr.idx], fileIdx: lr.idx, lineNo: lr.lineNo, firstLine: lr.lineNo == 1,
		terminated: terminated, size: len(keep), hash: hex.EncodeToString(h.Sum(nil))}
	if long {
		v.perr = fmt.Errorf("line longer than %d bytes", maxLine)
		return v, nil
	}
	if r, err := ParseRecord(keep); err != nil {
		v.perr = err
	} else {
		v.rec = &r
	}
	return v, nil
}

// Verify checks the hash chain across paths, given oldest first (a rotated
// set: audit.jsonl.5 … audit.jsonl.1, audit.jsonl; see Files). It stops at
// the first break and says where and what. The error is non-nil only when a
// file cannot be read. See the package comment for what this proves.
func Verify(paths ...string) (Report, error) {
	return verify(paths, openFile, nil)
}

func openFile(p string) (io.ReadCloser, error) { return os.Open(p) }

// verify checks the chain of paths; for every seq in want it stores the
// hash of the line with that seq, if the chain reaches it.
func verify(paths []string, open func(string) (io.ReadCloser, error), want map[uint64]string) (Report, error) {
	rep := Report{Files: len(paths)}
	if len(paths) == 0 {
		return rep, errors.New("no audit log files to verify")
	}
	lr := &lineReader{paths: paths, open: open}
	defer lr.close()
	var last, bad *vline // the last line in the chain; an unparseable line before this one
	brk := func(v *vline, k Kind, format string, args ...any) (Report, error) {
		rep.Break = &Finding{File: v.file, Line: v.lineNo, Kind: k, Detail: fmt.Sprintf(format, args...)}
		return rep, nil
	}
	for {
		v, err := lr.next()
		if err != nil {
			return rep, err
		}
		if bad != nil {
			// An unparseable line is accepted only when the line after it
			// acknowledges it (a torn line after a crash).
			if v == nil || v.rec == nil || v.rec.Torn != bad.hash {
				if v != nil && v.rec != nil && v.rec.Torn != "" {
					return brk(bad, KindEdited, "changed after it was written: line %d records a different hash for this torn line", v.lineNo)
				}
				if last != nil && v != nil && v.rec != nil && v.rec.Prev == last.hash && v.rec.Seq == last.rec.Seq+1 {
					return brk(bad, KindInserted, "not a record (%v), and line %d continues the chain from the line before it", bad.perr, v.lineNo)
				}
				return brk(bad, KindEdited, "%v", bad.perr)
			}
			rep.Torn = append(rep.Torn, Finding{File: bad.file, Line: bad.lineNo, Kind: KindTorn,
				Detail: fmt.Sprintf("%d bytes of a record torn by a crash, acknowledged by line %d", bad.size, v.lineNo)})
		}
		if v == nil {
			break
		}
		if !v.terminated {
			if v.fileIdx == len(paths)-1 {
				// The newest file may end mid-record after a crash (or while
				// the agent is writing): report it, it is not in the chain.
				rep.Torn = append(rep.Torn, Finding{File: v.file, Line: v.lineNo, Kind: KindTorn,
					Detail: fmt.Sprintf("the file ends in an incomplete record (%d bytes, no newline): the agent stopped while writing it, or the file was cut here", v.size)})
				break
			}
			return brk(v, KindTruncated, "the file ends in the middle of a record (%d bytes, no newline), but a newer file follows it", v.size)
		}
		if v.rec == nil {
			if bad != nil {
				return brk(bad, KindEdited, "%v", bad.perr)
			}
			bad = v
			continue
		}
		r := v.rec
		firstLine := v.firstLine || (bad != nil && bad.firstLine)
		if r.Torn != "" && bad == nil {
			return brk(v, KindRemoved, "this record acknowledges a torn line before it, which is gone")
		}
		bad = nil
		next, err := lr.peek()
		if err != nil {
			return rep, err
		}
		switch {
		case firstLine && r.Event != EventHeader:
			if next != nil && next.fileIdx == v.fileIdx && next.rec != nil && next.rec.Event == EventHeader {
				return brk(v, KindReordered, "the header record of %s is not its first line", v.file)
			}
			return brk(v, KindRemoved, "the first line of %s is not a header record: lines were removed from the start of the file", v.file)
		case !firstLine && r.Event == EventHeader:
			return brk(v, KindInserted, "a header record in the middle of a file (files joined, or a line written by hand)")
		}
		if last == nil {
			rep.First, rep.Continues, rep.FirstPrev, rep.firstFile = r.Seq, r.Prev != "", r.Prev, v.file
		} else if r.Prev != last.hash || r.Seq != last.rec.Seq+1 {
			f := classify(v, last, next)
			rep.Break = &f
			return rep, nil
		}
		last = v
		if _, ok := want[r.Seq]; ok {
			want[r.Seq] = v.hash
		}
		rep.Records++
		rep.Last, rep.LastHash = r.Seq, v.hash
	}
	return rep, nil
}

// classify names the first line that breaks the chain: v does not follow
// last; next (possibly nil) is the line after v and tells an edit of the line
// before from an edit of this one, a swap from a removal.
func classify(v, last, next *vline) Finding {
	r, want := v.rec, last.rec.Seq+1
	at := func(w *vline, k Kind, format string, args ...any) Finding {
		return Finding{File: w.file, Line: w.lineNo, Kind: k, Detail: fmt.Sprintf(format, args...)}
	}
	where := func(w *vline) string {
		if w.file == v.file {
			return fmt.Sprintf("line %d", w.lineNo)
		}
		return fmt.Sprintf("%s:%d", w.file, w.lineNo)
	}
	chainsTo := func(w *vline) bool {
		return next != nil && next.rec != nil && next.rec.Prev == w.hash && next.rec.Seq == w.rec.Seq+1
	}
	boundary := ""
	if last.file != v.file {
		boundary = fmt.Sprintf("%s does not continue %s: ", v.file, last.file)
	}
	prevOK, seqOK := r.Prev == last.hash, r.Seq == want
	switch {
	case prevOK && !seqOK:
		return at(v, KindEdited, "%sseq is %d, expected %d", boundary, r.Seq, want)
	case !prevOK && seqOK:
		if chainsTo(v) {
			return at(last, KindEdited, "changed after it was written: %s records a different hash for it", where(v))
		}
		if chainsTo(last) {
			return at(v, KindInserted, "%sline %d continues the chain from %s, skipping this one", boundary, next.lineNo, where(last))
		}
		if next == nil {
			return at(v, KindAppended, "%sthe last line does not chain to %s: written by hand, or %s was edited", boundary, where(last), where(last))
		}
		return at(v, KindEdited, "%schanged after it was written: it does not chain to %s, and the next line does not chain to it", boundary, where(last))
	}
	if next != nil && r.Prev == next.hash {
		return at(v, KindReordered, "%sthis line was written after line %d (seq %d after seq %d)", boundary, next.lineNo, r.Seq, next.rec.Seq)
	}
	if chainsTo(last) {
		return at(v, KindInserted, "%sline %d continues the chain from %s, skipping this one", boundary, next.lineNo, where(last))
	}
	if r.Seq > want {
		if next != nil && next.rec != nil && next.rec.Seq == want {
			return at(v, KindReordered, "%sseq %d comes before seq %d", boundary, r.Seq, want)
		}
		return at(v, KindRemoved, "%s%d record(s) missing before this line: seq jumps from %d to %d", boundary, r.Seq-want, last.rec.Seq, r.Seq)
	}
	if next == nil {
		return at(v, KindAppended, "%sthe last line does not continue the chain (seq %d after %d)", boundary, r.Seq, last.rec.Seq)
	}
	if v.hash == last.hash {
		return at(v, KindAppended, "%sa copy of the line before it", boundary)
	}
	return at(v, KindReordered, "%sseq %d comes after seq %d", boundary, r.Seq, last.rec.Seq)
}
