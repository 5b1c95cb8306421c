package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// scripted is a Confirmer that answers from a list, as the person would.
type scripted struct {
	mu      sync.Mutex
	replies []reply
	texts   []string
}

type reply struct {
	yes bool
	err error
}

var (
	sayYes     = &reply{yes: true}
	sayNo      = &reply{}
	noAnswer   = &reply{err: fmt.Errorf("prompt program x: %w", ErrTimeout)}
	cannotShow = &reply{err: errors.New("cannot ask: no display")}
)

func (s *scripted) Confirm(ctx context.Context, text string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.texts = append(s.texts, text)
	if len(s.replies) == 0 {
		return false, errors.New("test: unexpected prompt")
	}
	r := s.replies[0]
	s.replies = s.replies[1:]
	return r.yes, r.err
}

func (s *scripted) prompts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.texts)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type notes struct {
	mu  sync.Mutex
	got [][2]string
}

func (n *notes) list() [][2]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][2]string(nil), n.got...)
}

func (n *notes) Notify(title, body string) {
	n.mu.Lock()
	n.got = append(n.got, [2]string{title, body})
	n.mu.Unlock()
}

// step is one thing that happens to an Asker in a scenario.
type step struct {
	advance  time.Duration
	forget   bool   // Forget()
	forgetFP string // ForgetKey(forgetFP)
	wantN    int    // what Forget/ForgetKey returns

	key, scope, path string // the question (ask when key != "")
	remember         time.Duration
	reply            *reply // the person's answer; nil: no prompt may be shown
	want             Outcome
}

func question(key, scope, path string, remember time.Duration) Question {
	return Question{
		KeyFingerprint: key, Scope: path + "|" + scope, FatigueScope: path, Remember: remember,
		Prompt: Prompt{KeyComment: "comment-" + key, KeyFingerprint: key, Purpose: scope, Path: hopsPath(path), Process: "ssh (1)"},
	}
}

func TestAskerScenarios(t *testing.T) {
	const k1, k2 = "SHA256:key1", "SHA256:key2"
	tests := []struct {
		name      string
		steps     []step
		wantNotes int
	}{
		{name: "a yes is remembered for its scope until it expires", steps: []step{
			{key: k1, scope: "login", path: "db", remember: 5 * time.Minute, reply: sayYes, want: OutcomeYes},
			{advance: 5*time.Minute - time.Second, key: k1, scope: "login", path: "db", want: OutcomeRemembered},
			{key: k1, scope: "git", path: "db", reply: sayYes, want: OutcomeYes},
			{key: k2, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
			{key: k1, scope: "login", path: "jump", reply: sayYes, want: OutcomeYes},
			{advance: time.Second, key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
		}},
		{name: "remember 0 asks every time", steps: []step{
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
		}},
		{name: "a no is never remembered", steps: []step{
			{key: k1, scope: "login", path: "db", remember: time.Hour, reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", remember: time.Hour, reply: sayYes, want: OutcomeYes},
		}},
		{name: "three refusals or timeouts start a cooldown for key and path", wantNotes: 1, steps: []step{
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{advance: 10 * time.Second, key: k1, scope: "login", path: "db", reply: noAnswer, want: OutcomeTimeout},
			{advance: 10 * time.Second, key: k1, scope: "git", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", want: OutcomeCooldown},
			{key: k1, scope: "other", path: "db", want: OutcomeCooldown},
			{key: k1, scope: "login", path: "jump", reply: sayNo, want: OutcomeNo},
			{key: k2, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
			{advance: 59 * time.Second, key: k1, scope: "login", path: "db", want: OutcomeCooldown},
			{advance: time.Second, key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
		}},
		{name: "refusals older than the window do not count", steps: []step{
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{advance: time.Minute, key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
		}},
		{name: "a yes resets the count", steps: []step{
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayNo, want: OutcomeNo},
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
		}},
		{name: "prompts that cannot be shown are errors, not fatigue", steps: []step{
			{key: k1, scope: "login", path: "db", reply: cannotShow, want: OutcomeError},
			{key: k1, scope: "login", path: "db", reply: cannotShow, want: OutcomeError},
			{key: k1, scope: "login", path: "db", reply: cannotShow, want: OutcomeError},
			{key: k1, scope: "login", path: "db", reply: sayYes, want: OutcomeYes},
		}},
		{name: "ForgetKey and Forget clear remembered yeses", steps: []step{
			{key: k1, scope: "login", path: "db", remember: time.Hour, reply: sayYes, want: OutcomeYes},
			{key: k1, scope: "git", path: "here", remember: time.Hour, reply: sayYes, want: OutcomeYes},
			{key: k2, scope: "login", path: "db", remember: time.Hour, reply: sayYes, want: OutcomeYes},
			{forgetFP: k1, wantN: 2},
			{key: k1, scope: "login", path: "db", remember: time.Hour, reply: sayYes, want: OutcomeYes},
			{key: k1, scope: "git", path: "here", remember: time.Hour, reply: sayYes, want: OutcomeYes},
			{key: k2, scope: "login", path: "db", want: OutcomeRemembered},
			{forget: true, wantN: 3},
			{key: k2, scope: "login", path: "db", remember: time.Minute, reply: sayYes, want: OutcomeYes},
			{advance: time.Minute, forget: true, wantN: 0}, // expired ones are not counted
			{forgetFP: k2, wantN: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &scripted{}
			clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			n := &notes{}
			a := NewAsker(c, AskerOptions{Now: clock.Now, Notifier: n})
			for i, s := range tt.steps {
				clock.Add(s.advance)
				switch {
				case s.forget:
					if got := a.Forget(); got != s.wantN {
						t.Fatalf("step %d: Forget() = %d, want %d", i, got, s.wantN)
					}
					continue
				case s.forgetFP != "":
					if got := a.ForgetKey(s.forgetFP); got != s.wantN {
						t.Fatalf("step %d: ForgetKey() = %d, want %d", i, got, s.wantN)
					}
					continue
				}
				before := c.prompts()
				if s.reply != nil {
					c.mu.Lock()
					c.replies = append(c.replies, *s.reply)
					c.mu.Unlock()
				}
				ans := a.Ask(context.Background(), question(s.key, s.scope, s.path, s.remember))
				prompted := c.prompts() - before
				if ans.Outcome != s.want {
					t.Fatalf("step %d: outcome %q (err %v), want %q", i, ans.Outcome, ans.Err, s.want)
				}
				if want := map[bool]int{true: 1, false: 0}[s.reply != nil]; prompted != want {
					t.Fatalf("step %d: %d prompts shown, want %d", i, prompted, want)
				}
				if ans.Yes != (s.want == OutcomeYes || s.want == OutcomeRemembered) {
					t.Fatalf("step %d: Yes = %v with outcome %q", i, ans.Yes, ans.Outcome)
				}
				if (ans.Err == nil) != (s.want == OutcomeYes || s.want == OutcomeNo || s.want == OutcomeRemembered) {
					t.Fatalf("step %d: outcome %q with err %v", i, ans.Outcome, ans.Err)
				}
			}
			if got := n.list(); len(got) != tt.wantNotes {
				t.Errorf("%d notifications, want %d: %q", len(got), tt.wantNotes, got)
			}
		})
	}
}

// The prompt says whether a yes is remembered, from Question.Remember.
func TestAskerPromptTextSaysRemember(t *testing.T) {
	c := &scripted{replies: []reply{{yes: true}}}
	a := NewAsker(c, AskerOptions{})
	q := question("SHA256:k", "login", "db", 10*time.Minute)
	q.Prompt.Remember = 0 // Question.Remember wins
	a.Ask(context.Background(), q)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.texts) != 1 || !strings.HasSuffix(c.texts[0], "A yes is remembered for 10m for this key, path and program.") {
		t.Errorf("prompt text: %q", c.texts)
	}
}

func TestAskerCooldownNoticeAndReason(t *testing.T) {
	c := &scripted{replies: []reply{{}, {}, {}}}
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	n := &notes{}
	a := NewAsker(c, AskerOptions{Now: clock.Now, Notifier: n, Cooldown: 2 * time.Minute})
	q := question("SHA256:k", "login", "jump.example (forwarded)", 0)
	for range 3 {
		a.Ask(context.Background(), q)
	}
	ans := a.Ask(context.Background(), q)
	if ans.Outcome != OutcomeCooldown || !errors.Is(ans.Err, ErrCooldown) {
		t.Fatalf("answer %+v, want cooldown", ans)
	}
	if want := "too many unanswered or refused prompts for this key, path and program; asking again after 12:02:00"; ans.Err.Error() != want {
		t.Errorf("reason %q, want %q", ans.Err, want)
	}
	want := [2]string{`safe-agent stopped asking about key "comment-SHA256:k" (SHA256:k)`,
		"3 requests to use this key through here → jump.example (forwarded) were refused or went unanswered within 1m.\n" +
			"Further requests are refused without asking for 2m."}
	if got := n.list(); len(got) != 1 || got[0] != want {
		t.Errorf("notifications %q\nwant [%q]", got, want)
	}
}

// gate is a Confirmer that holds each prompt until the test answers it,
// and says which prompt is showing.
type gate struct {
	shown  chan string // the text of each prompt as it appears
	answer chan bool   // the person's answer to the prompt showing
}

func newGate() *gate { return &gate{shown: make(chan string, 16), answer: make(chan bool)} }

func (g *gate) Confirm(ctx context.Context, text string) (bool, error) {
	g.shown <- text
	select {
	case yes := <-g.answer:
		return yes, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// next waits for the next prompt and returns its purpose line.
func (g *gate) next(t *testing.T) string {
	t.Helper()
	select {
	case text := <-g.shown:
		for _, l := range strings.Split(text, "\n") {
			if p, ok := strings.CutPrefix(l, "To: "); ok {
				return p
			}
		}
		t.Fatalf("prompt without a purpose line: %q", text)
	case <-time.After(5 * time.Second):
		t.Fatal("no prompt shown")
	}
	return ""
}

// queued is how many questions wait behind the prompt showing.
func (a *Asker) queued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

func waitQueued(t *testing.T, a *Asker, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.queued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d questions queued, want %d", a.queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// remoteQ is a question through the forwarded path via, as the agent
// builds it.
func remoteQ(key, purpose, via string) Question {
	q := question(key, purpose, via+" (forwarded)", 0)
	q.Remote, q.RemotePath = true, "forwarded "+via
	return q
}

func goAsk(a *Asker, q Question) <-chan Answer {
	ch := make(chan Answer, 1)
	go func() { ch <- a.Ask(context.Background(), q) }()
	return ch
}

func mustAnswer(t *testing.T, ch <-chan Answer, want Outcome) Answer {
	t.Helper()
	select {
	case ans := <-ch:
		if ans.Outcome != want {
			t.Fatalf("outcome %q (err %v), want %q", ans.Outcome, ans.Err, want)
		}
		return ans
	case <-time.After(5 * time.Second):
		t.Fatalf("no answer, want %q", want)
	}
	return Answer{}
}

// Local questions are asked before forwarded ones that waited longer;
// the prompt showing is not taken down for them.
func TestAskerLocalBeforeRemote(t *testing.T) {
	g := newGate()
	a := NewAsker(g, AskerOptions{})
	first := goAsk(a, remoteQ("SHA256:k", "remote-1", "jump1"))
	if got := g.next(t); got != "remote-1" {
		t.Fatalf("first prompt %q", got)
	}
	r2 := goAsk(a, remoteQ("SHA256:k", "remote-2", "jump2"))
	waitQueued(t, a, 1)
	l1 := goAsk(a, question("SHA256:k", "local-1", "here", 0))
	waitQueued(t, a, 2)
	r3 := goAsk(a, remoteQ("SHA256:k", "remote-3", "jump3"))
	waitQueued(t, a, 3)
	l2 := goAsk(a, question("SHA256:k", "local-2", "here", 0))
	waitQueued(t, a, 4)

	g.answer <- false
	mustAnswer(t, first, OutcomeNo)
	var order []string
	for range 4 {
		order = append(order, g.next(t))
		g.answer <- true
	}
	if got, want := strings.Join(order, " "), "local-1 local-2 remote-2 remote-3"; got != want {
		t.Errorf("prompts shown in the order %s, want %s", got, want)
	}
	for _, ch := range []<-chan Answer{l1, l2, r2, r3} {
		mustAnswer(t, ch, OutcomeYes)
	}
}

// A forwarded path holds one prompt at a time: another question on it is
// refused at once (an identical one shares the prompt); other paths and
// local questions still queue; the path is free again once its prompt is
// answered or its asker leaves.
func TestAskerOnePromptPerRemotePath(t *testing.T) {
	g := newGate()
	a := NewAsker(g, AskerOptions{})
	blocker := goAsk(a, question("SHA256:k", "local-0", "here", 0))
	g.next(t)

	waiting := goAsk(a, remoteQ("SHA256:k", "remote-1", "jump"))
	waitQueued(t, a, 1)
	twin := goAsk(a, remoteQ("SHA256:k", "remote-1", "jump")) // identical: shares
	start := time.Now()
	busy := a.Ask(context.Background(), remoteQ("SHA256:k", "remote-2", "jump"))
	if busy.Outcome != OutcomeBusy || !errors.Is(busy.Err, ErrPathBusy) || busy.Yes {
		t.Fatalf("second question on a path with a prompt waiting: %+v, want busy", busy)
	}
	if busy.Err.Error() != "a prompt for this path is already waiting" {
		t.Errorf("reason %q", busy.Err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("busy answer took %v: it must not wait", d)
	}
	other := goAsk(a, remoteQ("SHA256:k", "remote-other", "jump2"))
	local := goAsk(a, question("SHA256:k2", "local-1", "here", 0))
	waitQueued(t, a, 3)

	g.answer <- true
	mustAnswer(t, blocker, OutcomeYes)
	for _, want := range []string{"local-1", "remote-1"} {
		if got := g.next(t); got != want {
			t.Fatalf("prompt %q, want %q", got, want)
		}
		if want == "remote-1" {
			// Showing counts as waiting, too.
			if ans := a.Ask(context.Background(), remoteQ("SHA256:k", "remote-3", "jump")); ans.Outcome != OutcomeBusy {
				t.Fatalf("question on a path whose prompt is showing: %q, want busy", ans.Outcome)
			}
		}
		g.answer <- true
	}
	mustAnswer(t, local, OutcomeYes)
	mustAnswer(t, waiting, OutcomeYes)
	if ans := mustAnswer(t, twin, OutcomeYes); !ans.Shared {
		t.Error("identical question did not share the prompt")
	}
	if got := g.next(t); got != "remote-other" {
		t.Fatalf("prompt %q, want remote-other", got)
	}
	g.answer <- false
	mustAnswer(t, other, OutcomeNo)

	// Answered: the path takes a question again.
	again := goAsk(a, remoteQ("SHA256:k", "remote-4", "jump"))
	if got := g.next(t); got != "remote-4" {
		t.Fatalf("prompt %q, want remote-4", got)
	}
	g.answer <- true
	mustAnswer(t, again, OutcomeYes)

	// A queued question whose asker left frees its path.
	blocker = goAsk(a, question("SHA256:k", "local-5", "here", 0))
	g.next(t)
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan Answer, 1)
	go func() { left <- a.Ask(ctx, remoteQ("SHA256:k", "remote-5", "jump")) }()
	waitQueued(t, a, 1)
	cancel()
	mustAnswer(t, left, OutcomeCancelled)
	waitQueued(t, a, 0)
	next := goAsk(a, remoteQ("SHA256:k", "remote-6", "jump"))
	waitQueued(t, a, 1)
	g.answer <- true
	mustAnswer(t, blocker, OutcomeYes)
	if got := g.next(t); got != "remote-6" {
		t.Fatalf("prompt %q, want remote-6", got)
	}
	g.answer <- true
	mustAnswer(t, next, OutcomeYes)
}

// Fatigue counts by key, fatigue scope (path and program) and origin:
// refusals a forwarded client provokes never cool down local use, nor
// another program's use of the same path.
func TestAskerFatigueScopedByClientAndOrigin(t *testing.T) {
	c := &scripted{}
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	a := NewAsker(c, AskerOptions{Now: clock.Now})
	ask := func(q Question, r *reply, want Outcome) {
		t.Helper()
		before := c.prompts()
		if r != nil {
			c.mu.Lock()
			c.replies = append(c.replies, *r)
			c.mu.Unlock()
		}
		ans := a.Ask(context.Background(), q)
		if ans.Outcome != want {
			t.Fatalf("outcome %q (err %v), want %q", ans.Outcome, ans.Err, want)
		}
		if shown := c.prompts() - before; shown != map[bool]int{true: 1}[r != nil] {
			t.Fatalf("%d prompts shown", shown)
		}
	}
	attacker := remoteQ("SHA256:k", "login", "jump")
	attacker.FatigueScope = "here → jump (forwarded)\x00ssh"
	for range 3 {
		ask(attacker, sayNo, OutcomeNo)
	}
	ask(attacker, nil, OutcomeCooldown)

	// The same scope string asked locally: a different origin.
	local := question("SHA256:k", "login", "here", 0)
	local.FatigueScope = attacker.FatigueScope
	ask(local, sayYes, OutcomeYes)
	// Another program through the same path.
	git := remoteQ("SHA256:k", "login", "jump")
	git.FatigueScope = "here → jump (forwarded)\x00git"
	ask(git, sayYes, OutcomeYes)

	// Once the forwarded cooldown is over, local refusals cool down local
	// use only.
	clock.Add(time.Minute)
	for range 3 {
		ask(local, sayNo, OutcomeNo)
	}
	ask(local, nil, OutcomeCooldown)
	ask(attacker, sayYes, OutcomeYes)
}
