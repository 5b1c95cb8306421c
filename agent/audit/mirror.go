package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// Mirror modes, as the policy's audit_mirror setting names them.
const (
	MirrorNone    = "none"
	MirrorJournal = "journal"
	MirrorSyslog  = "syslog"
)

// Defaults for MirrorOptions.
const (
	DefaultMirrorQueue   = 1024
	DefaultMirrorRetry   = 30 * time.Second
	DefaultMirrorLogEach = time.Minute
)

// mirrorStopWait bounds how long Close waits for queued copies to go out:
// a stuck log daemon must not keep the agent from stopping.
const mirrorStopWait = 2 * time.Second

// Sink receives a copy of each audit record after it is in the file.
// line is the record's exact line in the file (its JSON, no newline), so
// that a copy can be checked against the hash chain.
type Sink interface {
	Send(r Record, line []byte) error
	Close() error
}

// MirrorOptions configure Log.SetMirror.
type MirrorOptions struct {
	// Mode says which mirror is in force: MirrorNone, MirrorJournal or
	// MirrorSyslog. It is asked as each record is appended (with the
	// log's lock held: it must be quick), so a policy reload changes the
	// mirror from the next record on. known is false while the mode
	// cannot be known yet (the policy is still being loaded): such
	// records wait, up to the queue's size, and go where the first record
	// with a known mode goes.
	Mode func() (mode string, known bool)
	// Open opens the sink of a mode (default OpenSink).
	Open func(mode string) (Sink, error)
	// QueueSize is how many records may wait to be mirrored; more are
	// dropped, and the drop is logged (default 1024).
	QueueSize int
	// Retry is how long after a failed open the sink is opened again
	// (default 30 s).
	Retry time.Duration
	// LogEvery bounds how often mirror failures are logged: the first at
	// once, then a count at most this often (default 1 min).
	LogEvery time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// mirror copies records to a Sink from a goroutine of its own: a slow or
// absent log daemon never delays or refuses a request, and the order of
// the copies is the order of the file.
type mirror struct {
	o MirrorOptions
	// ch holds pointers: a queue of records themselves would keep
	// QueueSize records' worth of memory (256 KB) allocated while
	// mirroring is off, as it is by default.
	ch   chan *queued
	done chan struct{}

	// Owned by the goroutine.
	mode     string
	sink     Sink
	openErr  error
	retryAt  time.Time
	waiting  []Record // records appended before the mode was known
	failures failureLog

	dropped sync.Mutex // guards drops
	drops   int

	// quiet: the last record queued had a known mode of MirrorNone, so
	// the goroutine has (or will have) no sink open and nothing waiting;
	// further such records would change nothing and are not queued.
	// Guarded by the Log's mu (send is called with it held).
	quiet bool
}

// SetMirror starts copying every record appended from now on (including
// the log's own header and torn-tail records) to the sink MirrorOptions
// selects. The file stays the record of truth: a mirror failure is logged
// and never fails Append. Calling it again replaces the mirror.
func (l *Log) SetMirror(o MirrorOptions) {
	if o.Open == nil {
		o.Open = OpenSink
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultMirrorQueue
	}
	if o.Retry <= 0 {
		o.Retry = DefaultMirrorRetry
	}
	if o.LogEvery <= 0 {
		o.LogEvery = DefaultMirrorLogEach
	}
	if o.Logger == nil {
		o.Logger = l.log
	}
	if o.Now == nil {
		o.Now = l.o.Now
	}
	m := &mirror{o: o, ch: make(chan *queued, o.QueueSize), done: make(chan struct{}),
		failures: failureLog{every: o.LogEvery, log: o.Logger}}
	go m.run()
	l.mu.Lock()
	old := l.mirror
	l.mirror = m
	l.mu.Unlock()
	old.stop()
}

// queued is a record on its way, with the mode in force when it was
// appended.
type queued struct {
	r     Record
	mode  string
	known bool
}

// send queues copies of written records; called with l.mu held, so the
// queue has the file's order. It never blocks.
func (m *mirror) send(recs ...*Record) {
	if m == nil {
		return
	}
	mode, known := m.o.Mode()
	none := known && (mode == MirrorNone || mode == "")
	if none && m.quiet {
		// Nothing to copy: waking the goroutine for every record would
		// cost a context switch per signature.
		return
	}
	for _, r := range recs {
		if r == nil {
			continue
		}
		select {
		case m.ch <- &queued{*r, mode, known}:
			m.quiet = none
		default:
			m.dropped.Lock()
			m.drops++
			m.dropped.Unlock()
		}
	}
}

// stop sends what is queued (waiting at most mirrorStopWait) and closes
// the sink.
func (m *mirror) stop() {
	if m == nil {
		return
	}
	close(m.ch)
	select {
	case <-m.done:
	case <-time.After(mirrorStopWait):
		m.o.Logger.Warn("audit mirror: gave up waiting for the log daemon; some records were not mirrored (they are in the audit file)")
	}
}

func (m *mirror) run() {
	defer close(m.done)
	defer m.closeSink()
	for q := range m.ch {
		m.takeDrops()
		if !q.known {
			if len(m.waiting) < cap(m.ch) {
				m.waiting = append(m.waiting, q.r)
			} else {
				m.failures.add(m.o.Now(), errors.New("policy not loaded yet and the queue is full: record dropped"))
			}
			continue
		}
		for _, w := range m.waiting {
			m.deliver(q.mode, w)
		}
		m.waiting = nil
		m.deliver(q.mode, q.r)
	}
	m.takeDrops()
	m.failures.flush()
}

func (m *mirror) takeDrops() {
	m.dropped.Lock()
	n := m.drops
	m.drops = 0
	m.dropped.Unlock()
	if n > 0 {
		m.failures.addN(m.o.Now(), n, errors.New("the mirror queue was full: records dropped"))
	}
}

// deliver sends one record to the sink of mode, (re)opening it as needed.
func (m *mirror) deliver(mode string, r Record) {
	if mode == "" {
		mode = MirrorNone
	}
	if mode != m.mode {
		m.closeSink()
		m.mode, m.openErr, m.retryAt = mode, nil, time.Time{}
	}
	if mode == MirrorNone {
		return
	}
	now := m.o.Now()
	if m.sink == nil {
		if !m.retryAt.IsZero() && now.Before(m.retryAt) {
			m.failures.add(now, m.openErr)
			return
		}
		s, err := m.o.Open(mode)
		if err != nil {
			m.openErr, m.retryAt = err, now.Add(m.o.Retry)
			m.failures.add(now, err)
			return
		}
		m.sink = s
	}
	line, err := marshalLine(&r)
	if err == nil {
		err = m.sink.Send(r, line)
	}
	if err != nil {
		m.failures.add(now, fmt.Errorf("seq %d: %w", r.Seq, err))
	}
}

func (m *mirror) closeSink() {
	if m.sink != nil {
		if err := m.sink.Close(); err != nil {
			m.o.Logger.Debug("audit mirror: close", "mode", m.mode, "err", err)
		}
		m.sink = nil
	}
}

// failureLog logs mirror failures: the first at once, then at most one
// line per interval with how many failed meanwhile, so that a missing log
// daemon does not flood the agent's own log.
type failureLog struct {
	every  time.Duration
	log    *slog.Logger
	last   time.Time
	n      int
	lastEr error
}

func (f *failureLog) add(now time.Time, err error) { f.addN(now, 1, err) }

func (f *failureLog) addN(now time.Time, n int, err error) {
	f.n += n
	f.lastEr = err
	if !f.last.IsZero() && now.Sub(f.last) < f.every {
		return
	}
	f.last = now
	f.flush()
}

func (f *failureLog) flush() {
	if f.n == 0 {
		return
	}
	f.log.Warn("audit mirror failed; the records are in the audit file, but not in the system log",
		"failed", f.n, "err", f.lastEr)
	f.n = 0
}

// OpenSink opens the sink of a mode: the systemd journal (its native
// socket) or the local syslog daemon (/dev/log).
func OpenSink(mode string) (Sink, error) {
	switch mode {
	case MirrorJournal:
		return OpenJournal()
	case MirrorSyslog:
		return OpenSyslog("", "")
	}
	return nil, fmt.Errorf("unknown audit mirror %q", mode)
}

// journalSocket is where journald listens; go-systemd sends there.
const journalSocket = "/run/systemd/journal/socket"

// JournalSink sends records to the systemd journal as structured entries.
type JournalSink struct{}

// OpenJournal checks that journald is listening.
func OpenJournal() (*JournalSink, error) {
	if !journal.Enabled() {
		return nil, fmt.Errorf("systemd journal: %s is not there (journald not running?)", journalSocket)
	}
	return &JournalSink{}, nil
}

// Send writes r with its fields as SAFE_AGENT_* journal fields.
func (JournalSink) Send(r Record, line []byte) error {
	if err := journal.Send(Summary(r), journalPriority(r), JournalFields(r, line)); err != nil {
		return fmt.Errorf("systemd journal: %w", err)
	}
	return nil
}

func (JournalSink) Close() error { return nil }

// JournalFields are the journal fields of a record: SAFE_AGENT_EVENT,
// _SEQ, _DECISION, _RULE, _REASON, _KEY_FP, _KEY_COMMENT, _PATH,
// _PURPOSE, _CLIENT_PID, _CLIENT, _PROMPT, _DETAIL (each when set), and
// SAFE_AGENT_RECORD, the record's exact line in the audit file.
func JournalFields(r Record, line []byte) map[string]string {
	f := map[string]string{
		"SYSLOG_IDENTIFIER": "safe-agent",
		"SAFE_AGENT_EVENT":  r.Event,
		"SAFE_AGENT_SEQ":    strconv.FormatUint(r.Seq, 10),
		"SAFE_AGENT_RECORD": string(line),
	}
	set := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	set("SAFE_AGENT_DECISION", r.Decision)
	set("SAFE_AGENT_RULE", r.Rule)
	set("SAFE_AGENT_REASON", r.Reason)
	set("SAFE_AGENT_DETAIL", r.Detail)
	if r.Key != nil {
		set("SAFE_AGENT_KEY_FP", r.Key.Fingerprint)
		set("SAFE_AGENT_KEY_COMMENT", r.Key.Comment)
	}
	set("SAFE_AGENT_PATH", pathText(r))
	set("SAFE_AGENT_PURPOSE", purposeText(r.Purpose))
	if r.Client != nil {
		set("SAFE_AGENT_CLIENT_PID", strconv.Itoa(r.Client.PID))
		set("SAFE_AGENT_CLIENT", r.Client.Chain)
	}
	if r.Prompt != nil {
		set("SAFE_AGENT_PROMPT", r.Prompt.Outcome)
	}
	return f
}

// journalPriority: refusals and trouble are warnings, a failed policy
// reload an error, everything else information.
func journalPriority(r Record) journal.Priority {
	switch {
	case r.Event == EventPolicyReloadFailed:
		return journal.PriErr
	case r.Decision == DecisionDenied, r.Event == EventBindFailed, r.Event == EventTorn:
		return journal.PriWarning
	}
	return journal.PriInfo
}

// SyslogSink sends records to a syslog daemon, one line each: the
// summary, then the record's JSON line.
type SyslogSink struct{ w *syslog.Writer }

// OpenSyslog connects to the syslog daemon at network and addr (both
// empty: the local one, /dev/log) with facility authpriv and tag
// "safe-agent".
func OpenSyslog(network, addr string) (*SyslogSink, error) {
	w, err := syslog.Dial(network, addr, syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "safe-agent")
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return &SyslogSink{w: w}, nil
}

// Send writes "SUMMARY {json}" at the record's priority.
func (s *SyslogSink) Send(r Record, line []byte) error {
	msg := Summary(r) + " " + string(line)
	var err error
	switch journalPriority(r) {
	case journal.PriErr:
		err = s.w.Err(msg)
	case journal.PriWarning:
		err = s.w.Warning(msg)
	default:
		err = s.w.Info(msg)
	}
	if err != nil {
		return fmt.Errorf("syslog: %w", err)
	}
	return nil
}

func (s *SyslogSink) Close() error { return s.w.Close() }

// Summary is a record in one line of plain text, for MESSAGE and syslog:
// "#12 sign denied: key you@laptop (SHA256:…), log in as git, here → jump
// (forwarded) → db, rule forwarded-default: …". Control characters from key
// comments or host names are escaped so the line stays one line.
func Summary(r Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s", r.Seq, r.Event)
	if r.Decision != "" {
		b.WriteString(" " + r.Decision)
	}
	var parts []string
	if r.Key != nil {
		k := r.Key.Fingerprint
		if r.Key.Comment != "" {
			k = r.Key.Comment + " (" + r.Key.Fingerprint + ")"
		}
		parts = append(parts, "key "+k)
	}
	if p := purposeText(r.Purpose); p != "" {
		parts = append(parts, p)
	}
	if p := pathText(r); p != "" {
		parts = append(parts, p)
	}
	if r.Prompt != nil {
		parts = append(parts, "prompt "+r.Prompt.Outcome)
	}
	if r.Rule != "" {
		parts = append(parts, "rule "+r.Rule)
	}
	for _, s := range []string{r.Reason, r.Detail} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) > 0 {
		b.WriteString(": " + strings.Join(parts, ", "))
	}
	return oneLine(b.String())
}

// pathText renders hops as the audit table does (policy.Path's short
// form): "here → jump (forwarded) → db"; "here" for a local request, ""
// for events that are not requests.
func pathText(r Record) string {
	if len(r.Path) == 0 && r.Event != EventSign && r.Event != EventList {
		return ""
	}
	return PathOf(r.Path, nil).Short()
}

func purposeText(p *Purpose) string {
	switch {
	case p == nil:
		return ""
	case p.Kind == PurposeLogin && p.User != "":
		return "log in as " + p.User
	case p.Kind == PurposeLogin:
		return "log in"
	case p.Kind == PurposeSSHSig:
		return "sign " + p.Namespace
	}
	return "sign opaque data"
}

// oneLine escapes control and format characters (line breaks, bidi
// overrides) as \uXXXX, so that a key comment cannot break or disguise
// the line.
func oneLine(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
