package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

const (
	scanBlock = 64 << 10
	// maxLine bounds the bytes kept for one line while reading; longer lines
	// are never written by a Log and are treated as invalid records.
	maxLine = 1 << 20
)

// scanBackward calls fn for every complete line of r[0:size], last line
// first, with the offset where the line starts and its length (without the
// newline). Bytes after the last newline (a torn or half-written line) are
// skipped. line is nil when the line is longer than maxLine. fn returns false
// to stop. Reads maxLine-bounded memory whatever the file size.
func scanBackward(r io.ReaderAt, size int64, fn func(line []byte, start, n int64) bool) error {
	buf := make([]byte, scanBlock)
	pos := size
	end := int64(-1) // offset of the newline ending the line being assembled
	var acc []byte   // bytes [pos, end) of that line, unless long
	long := false
	add := func(seg []byte) {
		if long {
			return
		}
		if len(acc)+len(seg) > maxLine {
			long, acc = true, nil
			return
		}
		acc = append(append(make([]byte, 0, len(seg)+len(acc)), seg...), acc...)
	}
	emit := func(start int64) bool {
		line := acc
		if long {
			line = nil
		} else if line == nil {
			line = []byte{}
		}
		return fn(line, start, end-start)
	}
	for pos > 0 {
		n := min(int64(scanBlock), pos)
		pos -= n
		chunk := buf[:n]
		if _, err := r.ReadAt(chunk, pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		hi := int(n)
		for {
			i := bytes.LastIndexByte(chunk[:hi], '\n')
			if i < 0 {
				break
			}
			if end >= 0 {
				add(chunk[i+1 : hi])
				if !emit(pos + int64(i) + 1) {
					return nil
				}
			}
			end = pos + int64(i)
			acc, long = nil, false
			hi = i
		}
		if end >= 0 {
			add(chunk[:hi])
		}
	}
	if end >= 0 {
		emit(0)
	}
	return nil
}

// fileTail is what Open needs to know about the end of an existing file.
type fileTail struct {
	haveLine  bool      // the file has at least one complete line
	lastHash  string    // chain hash of the last complete line
	lastSeq   uint64    // seq of the last complete line that parses (0: none)
	lastValid bool      // the last complete line parses as a record
	lastTime  time.Time // time of the record with lastSeq
	fragStart int64     // offset after the last newline
	fragHash  string    // SHA-256 of bytes [fragStart, size), if any
}

// readTail reads the end of the file at path (size bytes of it) backwards.
func readTail(path string, size int64) (fileTail, error) {
	var t fileTail
	f, err := os.Open(path)
	if err != nil {
		return t, err
	}
	defer f.Close()
	first := true
	err = scanBackward(f, size, func(line []byte, start, n int64) bool {
		if first {
			first = false
			t.haveLine = true
			t.fragStart = start + n + 1
			h, err := hashRange(f, start, n)
			if err != nil {
				return false
			}
			t.lastHash = h
			if line != nil {
				if r, err := ParseRecord(line); err == nil {
					t.lastSeq, t.lastTime, t.lastValid = r.Seq, r.Time, true
					return false
				}
			}
			return true
		}
		// The last line is damaged: find the last seq to continue from.
		if line != nil {
			if r, err := ParseRecord(line); err == nil {
				t.lastSeq, t.lastTime = r.Seq, r.Time
				return false
			}
		}
		return true
	})
	if err != nil {
		return t, err
	}
	if t.haveLine && t.lastHash == "" {
		return t, fmt.Errorf("read %s: cannot hash its last line", path)
	}
	if t.fragStart < size {
		if t.fragHash, err = hashRange(f, t.fragStart, size-t.fragStart); err != nil {
			return t, err
		}
	}
	return t, nil
}

func hashRange(r io.ReaderAt, off, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, off, n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tailOfFile is readTail for a file that may not exist (ok false).
func tailOfFile(path string) (t fileTail, ok bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return t, false, nil
	}
	if err != nil {
		return t, false, err
	}
	t, err = readTail(path, fi.Size())
	return t, err == nil, err
}
