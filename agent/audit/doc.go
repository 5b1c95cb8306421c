// Package audit is safe-agent's audit log: an append-only, hash-chained
// JSON Lines file. It writes records (Log), reads them back newest first
// without loading large files whole (Tail, Follow), and checks the chain
// (Verify).
//
// # File format
//
// One JSON object per line, each ending in "\n". Every line carries "seq", a
// number one higher than the line before it (across rotated files too), and
// "prev", the hex SHA-256 of the previous line's bytes without its newline.
// The first line of every file is a "header" record with a random log_id; its
// prev is the hash of the last line of the file it follows ("" for the very
// first file). Rotation renames audit.jsonl to audit.jsonl.1 (.1 to .2, …),
// so a rotated set read oldest first is one unbroken chain. Headers also
// name the checkpoint file ("checkpoint"), so that a later writer knows one
// was kept.
//
// # Retention
//
// The file is rotated at Options.MaxSize (64 MiB). The newest Options.Keep
// (5) rotated files are always kept; older ones are deleted, oldest first,
// only once their newest record is older than Options.MinRetention (24 h).
// A flood of records therefore cannot push the records of the last day out
// of the log: it grows instead. Only when the log's file system has less
// than Options.MinFree (256 MiB) free does rotation delete files beyond Keep
// although they are younger; it then logs a warning, says so in the next
// file's header, calls Options.OnRetentionOverride and reports it in
// (*Log).Health, which also says whether the disk is low now.
//
// # Checkpoint
//
// Before a file is deleted, a line is added to audit.jsonl.checkpoint
// (rewritten atomically: temporary file, fsync, rename, fsync of the
// directory): the deleted file's log_id, first seq and the hash its header
// chains from, last seq and last hash, record count, and when and why it
// was deleted. Consecutive lines link up like the files did, and the last
// one links to the header of the oldest file kept. Past 1000 lines the
// oldest are merged into one, which still covers the same records, so the
// file stays under about 400 KB. VerifyLog (and `safe-agent audit verify`)
// fails when the oldest file does not start the chain and the checkpoint
// does not account for every record before it, or when the checkpoint's
// lines do not link up: deleting a file by hand, or the checkpoint, or
// editing it, is found. A crash between writing the line and deleting the
// file leaves a line for a file still there; verify checks that line
// against the file, and the next rotation deletes the file without
// repeating the line.
//
// Logs written before checkpoints existed start in the middle of the chain.
// Open then starts the checkpoint with one "unaccounted" line for the
// records already gone (verify passes and says nothing vouches for them),
// but only if no file of the log names a checkpoint: once one was kept, a
// missing checkpoint is a deletion and stays a failure.
//
// # Durability
//
// Append hands the whole line to the kernel in one write(2) on an O_APPEND
// file and returns only after it did, so a record exists before the agent
// replies; a killed agent loses nothing it replied to. fsync is batched by a
// background goroutine at least once per Options.SyncInterval (1 s) and on
// Close: a power failure or kernel crash can lose up to that much of the tail.
//
// If the agent died in the middle of a write, the file ends in a torn line
// (no newline). Open keeps those bytes, ends them with a newline and, with the
// next Append, writes a "torn-tail" record (or a header, if the torn line was
// the file's first) whose "torn" field is the SHA-256 of the torn bytes and
// whose prev skips over them to the last whole line. Verify accepts exactly
// that shape and reports it; any other unparseable line is a break.
//
// # What Verify proves, and what it cannot
//
// With only a hash chain and no secret key, Verify proves that the lines it
// read are consistent with having been written in that order by one writer:
//
//   - a changed byte in any line that has a successor is found (the
//     successor's prev no longer matches), and so is a changed prev or seq;
//   - a removed line, or a removed run of lines, inside the set is found
//     (prev mismatch and a gap in seq); so is a removed file in the middle of a
//     rotated set, and lines removed from the start of a file (no header);
//   - (VerifyLog) removed oldest files, unless the checkpoint was rewritten
//     to match: its last hash must be what the oldest file chains from;
//   - swapped or reordered lines are found (seq goes backwards or jumps, prev
//     mismatches);
//   - a line written by hand (inserted or appended) is found unless its author
//     computed a correct seq and prev: missing, malformed or wrong chain
//     fields are caught;
//   - a file cut in the middle of a record is found; in the newest file that
//     is indistinguishable from a crash mid-write and is reported as a torn
//     tail, not as a break.
//
// It cannot prove:
//
//   - that a line with a correct seq and prev was written by the agent:
//     anyone who can write the file can compute SHA-256 and append records,
//     or rewrite the whole chain from any point on;
//   - that nothing was removed from the end: cutting whole lines off the
//     newest file, or deleting the newest files of a rotated set, leaves a
//     valid chain (Verify, which does not read the checkpoint, also misses
//     deleted oldest files; so does VerifyLog if the checkpoint was
//     rewritten to match, or if every file and the checkpoint are gone);
//   - that the last line is unedited, apart from its seq and prev (no later
//     line carries its hash).
//
// Defending against those needs the chain anchored outside the file: write
// down Report.LastHash (`safe-agent audit verify` prints it) or mirror records
// to another machine, and check later that the chain still passes through it.
package audit
