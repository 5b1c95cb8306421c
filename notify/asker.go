package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Outcome is how a question ended.
type Outcome string

const (
	OutcomeYes        Outcome = "yes"         // the person said yes (or "Allow once")
	OutcomeYesProgram Outcome = "yes-program" // "Allow <program> for N minutes"
	OutcomeNo         Outcome = "no"          // the person said no
	OutcomeTimeout    Outcome = "timeout"     // nobody answered in time
	OutcomeError      Outcome = "error"       // no prompt could be shown, or it crashed
	OutcomeRemembered Outcome = "remembered"  // an earlier yes still covers it
	OutcomeCooldown   Outcome = "cooldown"    // refused without asking: prompt fatigue
	OutcomeCancelled  Outcome = "cancelled"   // the caller went away first
	OutcomeBusy       Outcome = "busy"        // refused without asking: its forwarded path already has a prompt waiting
)

// ErrCooldown: the question was refused without asking because recent
// prompts for the same key, path and program went unanswered or were
// refused.
var ErrCooldown = errors.New("too many unanswered or refused prompts")

// ErrPathBusy: a remote question was refused without asking because a
// prompt for its forwarded path is already waiting (or showing).
var ErrPathBusy = errors.New("a prompt for this path is already waiting")

// Question is one request to ask about.
type Question struct {
	// KeyFingerprint is the key's "SHA256:…" fingerprint; ForgetKey
	// finds remembered answers by it.
	KeyFingerprint string
	// Scope is everything besides the key that a yes covers: path,
	// purpose and requesting program, as one string built by the caller.
	// Questions with the same key and Scope are identical: they share a
	// prompt and a remembered yes.
	Scope string
	// FatigueScope is what prompt fatigue counts by, besides the key and
	// whether the question is Remote: the path and the requesting
	// program, so that refusals one client provokes do not cool down
	// another's use of the key.
	FatigueScope string
	// Remote marks a question from a forwarded connection (or one whose
	// session-bind failed). Local questions are always shown before
	// remote ones, and a remote question's refusals never start a
	// cooldown for local ones.
	Remote bool
	// RemotePath names, for a Remote question, the forwarded path it came
	// through. A path holds at most one prompt at a time (waiting or
	// showing): another remote question on it is refused at once with
	// OutcomeBusy unless it is identical to that one (then it shares it).
	RemotePath string
	// Prompt is what is shown. Its Remember field is set from Remember.
	Prompt Prompt
	// Remember is how long a yes covers identical questions (0: never),
	// when the prompt program shows only yes and no.
	Remember time.Duration
	// ProgramFor, when > 0, lets a prompt program that can show choices
	// (zenity, kdialog, osascript) offer "Allow once", "Allow <program>
	// for ProgramFor" and "Deny" instead of yes and no. "Allow once"
	// remembers nothing; the program choice remembers the yes for
	// ProgramFor, for identical questions: so Scope must name the
	// program's executable. Other prompt programs ask yes/no as before.
	ProgramFor time.Duration
	// Program is the requesting program's executable path, named on the
	// program choice and in the prompt.
	Program string
}

// Answer is how a question ended. Yes is true only for OutcomeYes,
// OutcomeYesProgram and OutcomeRemembered; Err says why for every other
// outcome but "no".
type Answer struct {
	Yes     bool
	Outcome Outcome
	// Waited is how long Ask took, queue included.
	Waited time.Duration
	// Shared is true when this caller got the answer of a prompt shown
	// for an identical question that was already waiting.
	Shared bool
	// Remember is how long this yes now covers identical questions: the
	// question's Remember for a yes/no prompt's yes, its ProgramFor for
	// the program choice, 0 for "Allow once" and every other outcome.
	Remember time.Duration
	Err      error
}

// AskerOptions configure an Asker; zero values take the defaults.
type AskerOptions struct {
	Timeout       time.Duration // how long one prompt stays up; default 30s
	Cooldown      time.Duration // how long fatigue refuses without asking; default 1m
	FatigueLimit  int           // refusals or timeouts that start a cooldown; default 3
	FatigueWindow time.Duration // within this long; default 1m
	// Now is the clock for remembered answers and fatigue; default time.Now.
	Now func() time.Time
	// Notifier, if set, is told when a cooldown starts.
	Notifier Notifier
	Logger   *slog.Logger
}

// Asker is the one place prompts come from. It shows one prompt at a time:
// local questions first come first served, then remote ones (a prompt
// already showing is never taken down for another); each forwarded path
// holds at most one prompt; identical questions that wait at the same time
// share one prompt and its answer; a yes is remembered for the question's
// Remember; and after FatigueLimit refused or unanswered prompts for the
// same key and fatigue scope within FatigueWindow, such questions are
// refused without asking for Cooldown. Safe for concurrent use.
type Asker struct {
	c    Confirmer
	o    AskerOptions
	log  *slog.Logger
	note Notifier

	mu         sync.Mutex
	pending    map[string]*request    // identity → waiting or showing
	queue      []*request             // not yet shown: local ones, then remote ones, each in order
	paths      map[string]*request    // RemotePath → its one waiting or showing request
	running    bool                   // the worker goroutine is alive
	remembered map[string]memory      // identity → remembered yes
	failures   map[string][]time.Time // fatigue identity → recent no/timeout times
	cooldown   map[string]time.Time   // fatigue identity → refuse until
}

type memory struct {
	key   string // fingerprint
	until time.Time
}

// request is one prompt to show, with everyone waiting for it.
type request struct {
	id, fid string
	q       Question
	waiters int
	cancel  context.CancelFunc // set once shown
	gone    bool               // every waiter left while it was shown
	done    chan struct{}      // closed when ans is set
	ans     Answer
}

// NewAsker returns an Asker that asks with c.
func NewAsker(c Confirmer, o AskerOptions) *Asker {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Cooldown <= 0 {
		o.Cooldown = time.Minute
	}
	if o.FatigueLimit <= 0 {
		o.FatigueLimit = 3
	}
	if o.FatigueWindow <= 0 {
		o.FatigueWindow = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Asker{
		c: c, o: o, log: log, note: o.Notifier,
		pending:    map[string]*request{},
		paths:      map[string]*request{},
		remembered: map[string]memory{},
		failures:   map[string][]time.Time{},
		cooldown:   map[string]time.Time{},
	}
}

func identity(key, scope string) string { return key + "\x00" + scope }

// fatigueIdentity keeps local and remote questions apart whatever their
// FatigueScope: refusals through a forwarded agent never cool down local
// use.
func fatigueIdentity(q Question) string {
	origin := "local"
	if q.Remote {
		origin = "remote"
	}
	return identity(q.KeyFingerprint, origin+"\x00"+q.FatigueScope)
}

// Ask answers q: from memory, by refusing during a cooldown, or by showing
// a prompt (or sharing one already waiting). When ctx ends first the
// caller leaves the queue with OutcomeCancelled; a prompt that nobody
// waits for any more is taken down.
func (a *Asker) Ask(ctx context.Context, q Question) Answer {
	start := a.o.Now()
	id := identity(q.KeyFingerprint, q.Scope)
	fid := fatigueIdentity(q)

	a.mu.Lock()
	if m, ok := a.remembered[id]; ok {
		if start.Before(m.until) {
			a.mu.Unlock()
			return Answer{Yes: true, Outcome: OutcomeRemembered}
		}
		delete(a.remembered, id)
	}
	if ans, ok := a.coolingLocked(fid, start); ok {
		a.mu.Unlock()
		return ans
	}
	r, shared := a.pending[id]
	if !shared {
		if ans, busy := a.pathBusyLocked(q); busy {
			a.mu.Unlock()
			a.log.Info("prompt refused without asking: its forwarded path already has one waiting", "key", q.KeyFingerprint, "path", q.Prompt.path())
			return ans
		}
		r = &request{id: id, fid: fid, q: q, done: make(chan struct{})}
		a.pending[id] = r
		a.enqueueLocked(r)
		if !a.running {
			a.running = true
			go a.work()
		}
	}
	r.waiters++
	a.mu.Unlock()

	select {
	case <-r.done:
	case <-ctx.Done():
		a.mu.Lock()
		select {
		case <-r.done: // answered at the same moment: take the answer
		default:
			a.leaveLocked(r)
			a.mu.Unlock()
			return Answer{Outcome: OutcomeCancelled, Waited: a.o.Now().Sub(start), Shared: shared,
				Err: fmt.Errorf("question withdrawn: %w", context.Cause(ctx))}
		}
		a.mu.Unlock()
	}
	ans := r.ans
	ans.Waited = a.o.Now().Sub(start)
	ans.Shared = shared
	return ans
}

// pathBusyLocked refuses a remote question whose path already holds a
// prompt: one forwarded path cannot queue prompts in front of the person.
func (a *Asker) pathBusyLocked(q Question) (Answer, bool) {
	if !q.Remote {
		return Answer{}, false
	}
	if a.paths[q.RemotePath] != nil {
		return Answer{Outcome: OutcomeBusy, Err: ErrPathBusy}, true
	}
	return Answer{}, false
}

// enqueueLocked queues r behind the questions of its kind: a local one
// goes before every remote one, so whoever sits at the machine is asked
// first.
func (a *Asker) enqueueLocked(r *request) {
	if r.q.Remote {
		a.paths[r.q.RemotePath] = r
		a.queue = append(a.queue, r)
		return
	}
	i := slices.IndexFunc(a.queue, func(x *request) bool { return x.q.Remote })
	if i < 0 {
		i = len(a.queue)
	}
	a.queue = slices.Insert(a.queue, i, r)
}

// dropLocked forgets r as the pending request of its identity and path.
func (a *Asker) dropLocked(r *request) {
	if a.pending[r.id] == r {
		delete(a.pending, r.id)
	}
	if r.q.Remote && a.paths[r.q.RemotePath] == r {
		delete(a.paths, r.q.RemotePath)
	}
}

// leaveLocked takes one waiter off r; the last one out removes r from the
// queue, or takes its prompt down if it is showing.
func (a *Asker) leaveLocked(r *request) {
	r.waiters--
	if r.waiters > 0 {
		return
	}
	a.dropLocked(r)
	if r.cancel != nil {
		r.gone = true
		r.cancel()
		return
	}
	for i, x := range a.queue {
		if x == r {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			break
		}
	}
}

// coolingLocked answers for a key and fatigue scope in cooldown.
func (a *Asker) coolingLocked(fid string, now time.Time) (Answer, bool) {
	until, ok := a.cooldown[fid]
	if !ok {
		return Answer{}, false
	}
	if !now.Before(until) {
		delete(a.cooldown, fid)
		return Answer{}, false
	}
	return Answer{Outcome: OutcomeCooldown, Err: fmt.Errorf("%w for this key, path and program; asking again after %s",
		ErrCooldown, until.Format("15:04:05"))}, true
}

// work shows the queued prompts one after the other and exits when the
// queue is empty.
func (a *Asker) work() {
	for {
		a.mu.Lock()
		if len(a.queue) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		r := a.queue[0]
		a.queue = a.queue[1:]
		// An earlier prompt in the queue may have started a cooldown.
		if ans, ok := a.coolingLocked(r.fid, a.o.Now()); ok {
			a.finishLocked(r, ans)
			a.mu.Unlock()
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), a.o.Timeout)
		r.cancel = cancel
		a.mu.Unlock()

		choice, err := a.show(ctx, r.q)
		cancel()

		a.mu.Lock()
		ans, cooled := a.recordLocked(r, choice, err)
		a.mu.Unlock()
		a.log.Debug("prompt answered", "key", r.q.KeyFingerprint, "outcome", ans.Outcome, "err", ans.Err)
		if cooled {
			// Before the answer goes out, so that whoever sees the
			// refusal can also see the notice.
			a.tellCooldown(r.q)
		}
		a.mu.Lock()
		a.finishLocked(r, ans)
		a.mu.Unlock()
	}
}

// show puts q in front of the person: with three choices when q offers
// them and the prompt program can show them, else as a yes/no question.
func (a *Asker) show(ctx context.Context, q Question) (Choice, error) {
	yesNo := q.Prompt
	yesNo.Remember = q.Remember
	yesNo.ProgramFor, yesNo.ProgramExe = 0, ""
	if q.ProgramFor <= 0 {
		yes, err := a.c.Confirm(ctx, yesNo.Text())
		if yes && err == nil {
			return ChoiceYes, nil
		}
		return ChoiceDeny, err
	}
	choices := q.Prompt
	choices.Remember = 0
	choices.ProgramFor, choices.ProgramExe = q.ProgramFor, q.Program
	return Choose(ctx, a.c, Choices{
		Text:         yesNo.Text(),
		ChoiceText:   choices.Text(),
		ProgramLabel: ProgramLabel(q.Program, q.ProgramFor),
	})
}

// granted is the outcome of a choice that allows, and how long it is
// remembered; ok is false for ChoiceDeny.
func granted(q Question, c Choice) (o Outcome, remember time.Duration, ok bool) {
	switch c {
	case ChoiceYes:
		return OutcomeYes, q.Remember, true
	case ChoiceOnce:
		return OutcomeYes, 0, true
	case ChoiceProgram:
		if q.ProgramFor <= 0 {
			// Never offered: take it as once.
			return OutcomeYes, 0, true
		}
		return OutcomeYesProgram, q.ProgramFor, true
	}
	return "", 0, false
}

// recordLocked turns a prompt's result into an Answer and updates memory
// and fatigue. cooled is true when this answer started a cooldown.
func (a *Asker) recordLocked(r *request, choice Choice, err error) (ans Answer, cooled bool) {
	now := a.o.Now()
	outcome, remember, yes := granted(r.q, choice)
	switch {
	case r.gone:
		return Answer{Outcome: OutcomeCancelled, Err: ErrCancelled}, false
	case yes && err == nil:
		a.pruneLocked(now)
		if remember > 0 {
			a.remembered[r.id] = memory{key: r.q.KeyFingerprint, until: now.Add(remember)}
		}
		delete(a.failures, r.fid)
		return Answer{Yes: true, Outcome: outcome, Remember: remember}, false
	case errors.Is(err, ErrTimeout):
		ans = Answer{Outcome: OutcomeTimeout, Err: err}
	case err != nil:
		// Not the person's doing: no fatigue.
		return Answer{Outcome: OutcomeError, Err: err}, false
	default:
		ans = Answer{Outcome: OutcomeNo}
	}
	a.pruneLocked(now)
	recent := a.failures[r.fid][:0]
	for _, t := range a.failures[r.fid] {
		if now.Sub(t) < a.o.FatigueWindow {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	if len(recent) >= a.o.FatigueLimit {
		delete(a.failures, r.fid)
		a.cooldown[r.fid] = now.Add(a.o.Cooldown)
		return ans, true
	}
	a.failures[r.fid] = recent
	return ans, false
}

// pruneLocked drops expired memories, failures and cooldowns, so that the
// maps hold only what can still matter.
func (a *Asker) pruneLocked(now time.Time) {
	for id, m := range a.remembered {
		if !now.Before(m.until) {
			delete(a.remembered, id)
		}
	}
	for fid, ts := range a.failures {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= a.o.FatigueWindow {
			delete(a.failures, fid)
		}
	}
	for fid, until := range a.cooldown {
		if !now.Before(until) {
			delete(a.cooldown, fid)
		}
	}
}

func (a *Asker) finishLocked(r *request, ans Answer) {
	a.dropLocked(r)
	r.ans = ans
	close(r.done)
}

// tellCooldown sends the one notification of a cooldown.
func (a *Asker) tellCooldown(q Question) {
	a.log.Info("prompt fatigue: refusing without asking", "key", q.KeyFingerprint, "path", q.Prompt.path(), "process", q.Prompt.Process, "remote", q.Remote, "for", a.o.Cooldown)
	if a.note == nil {
		return
	}
	p := q.Prompt
	a.note.Notify("safe-agent stopped asking about key "+p.keyName(), fmt.Sprintf(
		"%d requests to use this key through %s were refused or went unanswered within %s.\nFurther requests are refused without asking for %s.",
		a.o.FatigueLimit, p.path(), formatDuration(a.o.FatigueWindow), formatDuration(a.o.Cooldown)))
}

// Forget clears every remembered yes (safe-agent forget, lock) and returns
// how many were in force.
func (a *Asker) Forget() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.liveLocked(func(memory) bool { return true })
	clear(a.remembered)
	return n
}

// ForgetKey clears the remembered yeses for one key (the key was removed)
// and returns how many were in force.
func (a *Asker) ForgetKey(fingerprint string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	match := func(m memory) bool { return m.key == fingerprint }
	n := a.liveLocked(match)
	for id, m := range a.remembered {
		if match(m) {
			delete(a.remembered, id)
		}
	}
	return n
}

// liveLocked counts unexpired remembered answers that match.
func (a *Asker) liveLocked(match func(memory) bool) int {
	now := a.o.Now()
	n := 0
	for _, m := range a.remembered {
		if match(m) && now.Before(m.until) {
			n++
		}
	}
	return n
}
