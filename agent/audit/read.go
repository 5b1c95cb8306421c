package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/safe-agent/safe-agent/internal/hint"
)

// DefaultPath is $XDG_STATE_HOME/safe-agent/audit.jsonl, or
// ~/.local/state/safe-agent/audit.jsonl when XDG_STATE_HOME is unset.
func DefaultPath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", hint.Wrap(fmt.Errorf("find the audit log: %w", err), "set XDG_STATE_HOME to an absolute path")
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "safe-agent", "audit.jsonl"), nil
}

// Files lists the existing files of the log at p, oldest first: the rotated
// files p.N … p.1, then p itself. This is the order Verify wants.
func Files(p string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list audit log files: %w", err)
	}
	type numbered struct {
		path string
		n    int
	}
	var found []numbered
	for _, e := range entries {
		q := filepath.Join(filepath.Dir(p), e.Name())
		if n := rotatedIndex(p, q); n >= 0 && !e.IsDir() {
			found = append(found, numbered{q, n})
		}
	}
	slices.SortFunc(found, func(a, b numbered) int { return b.n - a.n })
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.path
	}
	return out, nil
}

// rotatedIndex is 0 for the log itself, N for p.N, -1 for other files.
func rotatedIndex(p, q string) int {
	if filepath.Clean(q) == filepath.Clean(p) {
		return 0
	}
	base, name := filepath.Base(p), filepath.Base(q)
	if filepath.Dir(q) != filepath.Dir(p) || !strings.HasPrefix(name, base+".") {
		return -1
	}
	digits := name[len(base)+1:]
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || strconv.Itoa(n) != digits {
		return -1
	}
	return n
}

// Filter selects records. Zero fields select everything; header records are
// left out unless Events names them.
type Filter struct {
	Since time.Time // records at or after this time
	// Key matches a fingerprint substring, or a comment substring (any case).
	Key string
	// Host matches any hop of the path: a name substring (any case), a glob
	// such as "*.internal", or a host-key fingerprint.
	Host string
	// Decision is "allowed", "denied", or "asked" (a person was prompted).
	Decision  string
	Forwarded bool     // only requests whose path includes a forwarded hop
	Events    []string // only these events
	AfterSeq  uint64   // only records with a larger seq
}

// Match says whether r passes the filter.
func (f Filter) Match(r Record) bool {
	if len(f.Events) > 0 {
		if !slices.Contains(f.Events, r.Event) {
			return false
		}
	} else if r.Event == EventHeader {
		return false
	}
	if r.Seq <= f.AfterSeq && f.AfterSeq > 0 {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if f.Key != "" {
		if r.Key == nil {
			return false
		}
		if !strings.Contains(r.Key.Fingerprint, f.Key) &&
			!strings.Contains(strings.ToLower(r.Key.Comment), strings.ToLower(f.Key)) {
			return false
		}
	}
	if f.Host != "" && !hostMatch(f.Host, r.Path) {
		return false
	}
	if f.Decision != "" {
		if strings.EqualFold(f.Decision, "asked") {
			if r.Prompt == nil {
				return false
			}
		} else if !strings.EqualFold(f.Decision, r.Decision) {
			return false
		}
	}
	if f.Forwarded && !slices.ContainsFunc(r.Path, func(h Hop) bool { return h.Forwarded }) {
		return false
	}
	return true
}

func hostMatch(pattern string, hops []Hop) bool {
	p := strings.ToLower(pattern)
	glob := strings.ContainsAny(p, "*?[")
	for _, h := range hops {
		if h.Fingerprint == pattern {
			return true
		}
		for _, n := range h.Names {
			n = strings.ToLower(n)
			if glob {
				if ok, _ := path.Match(p, n); ok {
					return true
				}
			} else if strings.Contains(n, p) {
				return true
			}
		}
	}
	return false
}

// Tail returns the newest n records that match f (all of them if n <= 0),
// oldest first. It reads the log and then its rotated files from the end
// backwards, block by block, and stops as soon as it has n, or reaches a
// record older than f.Since. Lines that do not parse are skipped (Verify
// reports them); so is a torn last line.
func Tail(p string, n int, f Filter) ([]Record, error) {
	files, err := Files(p)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no audit log at %s: %w", p, fs.ErrNotExist)
	}
	var out []Record
	done := false
	for i := len(files) - 1; i >= 0 && !done; i-- {
		err := func() error {
			fh, err := os.Open(files[i])
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // rotated away meanwhile
				}
				return err
			}
			defer fh.Close()
			fi, err := fh.Stat()
			if err != nil {
				return err
			}
			return scanBackward(fh, fi.Size(), func(line []byte, _, _ int64) bool {
				if line == nil {
					return true
				}
				r, err := ParseRecord(line)
				if err != nil {
					return true
				}
				// The log is in time and seq order: nothing older can match.
				if (!f.Since.IsZero() && r.Time.Before(f.Since)) || (f.AfterSeq > 0 && r.Seq <= f.AfterSeq) {
					done = true
					return false
				}
				if f.Match(r) {
					out = append(out, r)
					if n > 0 && len(out) >= n {
						done = true
						return false
					}
				}
				return true
			})
		}()
		if err != nil {
			return nil, fmt.Errorf("read audit log %s: %w", files[i], err)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// FollowInterval is how often Follow looks for new records.
const FollowInterval = 200 * time.Millisecond

// Follow calls out for every record matching f appended to the log at p
// from now on (or, with f.AfterSeq set, from the first record after it in the
// current file), until ctx is done. It polls. When the file is rotated it
// reads it to its end and moves on to the file whose header chains to it, so
// no record is skipped however many rotations happen between two looks. If
// the log does not exist yet it waits for it. It returns nil when ctx is done.
func Follow(ctx context.Context, p string, f Filter, out func(Record)) error {
	fl := &follower{p: p, f: f, out: out, buf: make([]byte, scanBlock)}
	defer fl.close()
	if err := fl.start(); err != nil {
		return fmt.Errorf("follow audit log %s: %w", p, err)
	}
	tick := time.NewTicker(FollowInterval)
	defer tick.Stop()
	for {
		if err := fl.poll(); err != nil {
			return fmt.Errorf("follow audit log %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

type follower struct {
	p        string
	f        Filter
	out      func(Record)
	buf      []byte
	cur      *os.File
	off      int64  // next byte of cur to read
	partial  []byte // an incomplete line at the end of cur
	long     bool   // the incomplete line is over maxLine: skip it
	lastHash string // hash of the last complete line of cur before off
	lost     int    // polls spent looking for the file after a rotated one
}

func (fl *follower) close() {
	if fl.cur != nil {
		fl.cur.Close()
	}
}

func (fl *follower) use(fh *os.File, off int64, lastHash string) {
	if fl.cur != nil {
		fl.cur.Close()
	}
	fl.cur, fl.off, fl.lastHash, fl.partial, fl.long, fl.lost = fh, off, lastHash, nil, false, 0
}

// start opens the log where Follow begins; a missing log is waited for.
func (fl *follower) start() error {
	fh, err := os.Open(fl.p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return err
	}
	off, h, err := startOffset(fh, fi.Size(), fl.f.AfterSeq)
	if err != nil {
		fh.Close()
		return err
	}
	fl.use(fh, off, h)
	return nil
}

func (fl *follower) poll() error {
	if fl.cur == nil {
		fh, err := os.Open(fl.p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fl.use(fh, 0, "") // it appeared after Follow started: all of it is new
	}
	for {
		if err := fl.readNew(); err != nil {
			return err
		}
		pi, err := os.Stat(fl.p)
		if err != nil {
			return nil // between rename and create in a rotation: look again later
		}
		ci, err := fl.cur.Stat()
		if err != nil {
			return err
		}
		if os.SameFile(pi, ci) {
			if ci.Size() < fl.off { // cut in place: start over
				fl.off, fl.lastHash, fl.partial, fl.long = 0, "", nil, false
			}
			return nil
		}
		// cur was rotated away: read what was written to it before the
		// rename, then go on with the file that continues its chain.
		if err := fl.readNew(); err != nil {
			return err
		}
		next, err := fl.successor()
		if err != nil {
			return err
		}
		if next == nil {
			// The new file may not have its header yet; after a while,
			// assume the chain was not continued and take the new file.
			if fl.lost++; fl.lost < 5 {
				return nil
			}
			if next, err = os.Open(fl.p); err != nil {
				return nil
			}
		}
		fl.use(next, 0, "")
	}
}

// successor opens the file of the log whose header chains to the last line
// read from cur; nil if there is none (yet).
func (fl *follower) successor() (*os.File, error) {
	if fl.lastHash == "" {
		return nil, nil
	}
	files, err := Files(fl.p)
	if err != nil {
		return nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		fh, err := os.Open(files[i])
		if err != nil {
			continue // rotated meanwhile
		}
		n, _ := fh.ReadAt(fl.buf, 0)
		if j := bytes.IndexByte(fl.buf[:n], '\n'); j >= 0 {
			if r, err := ParseRecord(fl.buf[:j]); err == nil && r.Event == EventHeader && r.Prev == fl.lastHash {
				return fh, nil
			}
		}
		fh.Close()
	}
	return nil, nil
}

// readNew reads cur from off to its end and emits the complete lines.
func (fl *follower) readNew() error {
	for {
		n, err := fl.cur.ReadAt(fl.buf, fl.off)
		fl.off += int64(n)
		data := fl.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if !fl.long && len(fl.partial)+len(data) <= maxLine {
					fl.partial = append(fl.partial, data...)
				} else {
					fl.long, fl.partial = true, nil
				}
				break
			}
			if !fl.long {
				line := append(fl.partial, data[:i]...)
				fl.lastHash = lineHash(line)
				if r, err := ParseRecord(line); err == nil && fl.f.Match(r) {
					fl.out(r)
				}
			} else {
				fl.lastHash = ""
			}
			fl.partial, fl.long = fl.partial[:0], false
			data = data[i+1:]
		}
		if errors.Is(err, io.EOF) || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// startOffset is where Follow starts in a file of this size, and the hash
// of the line before that: after the last complete line, or after the line
// with seq afterSeq when afterSeq > 0.
func startOffset(r io.ReaderAt, size int64, afterSeq uint64) (int64, string, error) {
	var off int64
	var hash string
	firstLine := true
	var herr error
	at := func(line []byte, start, n int64) {
		off = start + n + 1
		if line != nil {
			hash = lineHash(line)
		} else {
			hash, herr = hashRange(r, start, n)
		}
	}
	err := scanBackward(r, size, func(line []byte, start, n int64) bool {
		if firstLine {
			firstLine = false
			at(line, start, n)
			if afterSeq == 0 {
				return false
			}
		}
		if line != nil {
			if rec, err := ParseRecord(line); err == nil && rec.Seq <= afterSeq {
				at(line, start, n)
				return false
			}
		}
		off, hash = start, "" // this line and all after it are new
		return true
	})
	if err == nil {
		err = herr
	}
	return off, hash, err
}
