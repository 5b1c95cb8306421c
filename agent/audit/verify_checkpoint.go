package audit

import (
	"errors"
	"fmt"
	"io/fs"
)

// VerifyLog checks the log at path: its files (see Files) oldest first, and
// the checkpoint next to them (CheckpointPath). Beyond Verify, it fails
// when the oldest file does not start the chain and the checkpoint does
// not account for every record before it, or when the checkpoint was
// changed (its lines do not link up, or do not link to the oldest file).
func VerifyLog(path string) (Report, error) {
	files, err := Files(path)
	if err != nil {
		return Report{}, err
	}
	if len(files) == 0 {
		return Report{}, fmt.Errorf("no audit log at %s: %w", path, fs.ErrNotExist)
	}
	return VerifyWithCheckpoint(CheckpointPath(path), files...)
}

// VerifyWithCheckpoint is VerifyLog for files given oldest first and the
// checkpoint file cp (which may be missing: then nothing may be missing
// before the first file).
func VerifyWithCheckpoint(cp string, paths ...string) (Report, error) {
	entries, cerr := ReadCheckpoint(cp)
	var lineErr *checkpointLineError
	switch {
	case cerr == nil, errors.Is(cerr, fs.ErrNotExist):
	case errors.As(cerr, &lineErr):
	default:
		return Report{Files: len(paths)}, fmt.Errorf("read audit checkpoint: %w", cerr)
	}
	want := make(map[uint64]string, len(entries))
	for _, e := range entries {
		want[e.LastSeq] = ""
	}
	rep, err := verify(paths, openFile, want)
	if err != nil || rep.Break != nil {
		return rep, err
	}
	if lineErr != nil {
		rep.Break = &Finding{File: cp, Line: lineErr.line, Kind: KindEdited, Detail: lineErr.err.Error()}
		return rep, nil
	}
	c := checkpointCheck{path: cp, entries: entries, missing: cerr != nil, rep: &rep, hashes: want}
	rep.Break = c.run()
	return rep, nil
}

// checkpointCheck holds what checking a checkpoint against a chain needs.
type checkpointCheck struct {
	path    string
	entries []CheckpointEntry
	missing bool // no checkpoint file
	rep     *Report
	hashes  map[uint64]string // seq → hash of that line in the chain ("" if not reached)
}

func (c *checkpointCheck) at(line int, k Kind, format string, args ...any) *Finding {
	return &Finding{File: c.path, Line: line, Kind: k, Detail: fmt.Sprintf(format, args...)}
}

func (c *checkpointCheck) run() *Finding {
	if f := c.linked(); f != nil {
		return f
	}
	rep := c.rep
	if rep.Records == 0 {
		return nil
	}
	if rep.First <= 1 {
		if rep.Continues {
			return &Finding{File: rep.firstFile, Line: 1, Kind: KindEdited,
				Detail: fmt.Sprintf("the first record has seq %d but chains from an earlier record", rep.First)}
		}
		return c.overlap(0) // nothing is missing: every line must be for a file still here
	}
	gap := rep.First - 1
	k := -1
	for i, e := range c.entries {
		if e.LastSeq == gap {
			k = i
			break
		}
	}
	if k < 0 {
		return c.unaccounted(gap)
	}
	e := c.entries[k]
	if e.LastHash != rep.FirstPrev {
		return c.at(k+1, KindEdited, "the records rotated away end with hash %s, but %s chains from %s: the checkpoint or that file was changed",
			e.LastHash, rep.firstFile, rep.FirstPrev)
	}
	if f := c.overlap(k + 1); f != nil {
		return f
	}
	s := &CheckpointReport{Path: c.path, Records: gap, FirstDeleted: c.entries[0].Deleted, LastDeleted: e.Deleted,
		Overlap: len(c.entries) - k - 1}
	for _, x := range c.entries[:k+1] {
		s.Files += x.Files
		if x.Unaccounted {
			s.Unaccounted += x.Records
		}
	}
	rep.Checkpoint = s
	return nil
}

// unaccounted is the finding for records before the oldest file that no
// checkpoint line ends at.
func (c *checkpointCheck) unaccounted(gap uint64) *Finding {
	rep := c.rep
	brk := func(format string, args ...any) *Finding {
		return &Finding{File: rep.firstFile, Line: 1, Kind: KindRemoved, Detail: fmt.Sprintf(format, args...)}
	}
	if len(c.entries) == 0 {
		f := brk("the chain starts at record %d but no checkpoint accounts for the %d records before it (deleted without a record)", rep.First, gap)
		if c.missing {
			f.Detail += fmt.Sprintf("; there is no checkpoint file %s", c.path)
		}
		return f
	}
	last := c.entries[len(c.entries)-1].LastSeq
	if last < gap {
		return brk("the chain starts at record %d but the checkpoint accounts only for records 1 to %d: records %d to %d were deleted without a record",
			rep.First, last, last+1, gap)
	}
	return c.at(len(c.entries), KindEdited, "no line of the checkpoint ends at record %d, the one before %s starts: the checkpoint or that file was changed",
		gap, rep.firstFile)
}

// linked checks that the checkpoint's lines form one chain from record 1.
func (c *checkpointCheck) linked() *Finding {
	for i, e := range c.entries {
		line := i + 1
		switch {
		case e.FirstSeq == 0 || e.LastSeq < e.FirstSeq || e.Records != e.LastSeq-e.FirstSeq+1:
			return c.at(line, KindEdited, "records %d does not match seq %d to %d", e.Records, e.FirstSeq, e.LastSeq)
		case e.Unaccounted && i > 0:
			return c.at(line, KindInserted, "only the first line may record records that were already missing")
		case i == 0 && e.FirstSeq != 1:
			return c.at(line, KindRemoved, "the checkpoint starts at record %d: records 1 to %d were deleted without a record", e.FirstSeq, e.FirstSeq-1)
		case i == 0 && e.FirstPrev != "":
			return c.at(line, KindEdited, "record 1 starts the chain, but this line says it chains from %s", e.FirstPrev)
		case i == 0:
			continue
		}
		p := c.entries[i-1]
		switch {
		case e.FirstSeq > p.LastSeq+1:
			return c.at(line, KindRemoved, "records %d to %d are missing from the checkpoint between line %d and this one", p.LastSeq+1, e.FirstSeq-1, i)
		case e.FirstSeq <= p.LastSeq:
			return c.at(line, KindReordered, "starts at record %d, but line %d already ends at record %d", e.FirstSeq, i, p.LastSeq)
		case e.FirstPrev != p.LastHash:
			return c.at(line, KindEdited, "does not continue line %d: its first record chains from %s, line %d ends with %s", i, e.FirstPrev, i, p.LastHash)
		}
	}
	return nil
}

// overlap checks the lines from index i on, which are for files still
// here: the chain must pass through their last hash.
func (c *checkpointCheck) overlap(i int) *Finding {
	for j := i; j < len(c.entries); j++ {
		e := c.entries[j]
		h := c.hashes[e.LastSeq]
		switch {
		case e.LastSeq > c.rep.Last:
			return c.at(j+1, KindEdited, "says records up to %d were deleted, but the log ends at record %d: the log was replaced or cut",
				e.LastSeq, c.rep.Last)
		case h == "":
			return c.at(j+1, KindEdited, "says records %d to %d were deleted, but the chain does not reach record %d", e.FirstSeq, e.LastSeq, e.LastSeq)
		case h != e.LastHash:
			return c.at(j+1, KindEdited, "says records %d to %d were deleted ending with hash %s, but record %d, still here, has hash %s",
				e.FirstSeq, e.LastSeq, e.LastHash, e.LastSeq, h)
		}
	}
	return nil
}
