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
		Prompt: Prompt{KeyComment: "comment-" + key, KeyFingerprint: key, Purpose: scope, Path: []string{"here", path}, Process: "ssh (1)"},
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
	if want := "too many unanswered or refused prompts for this key and path; asking again after 12:02:00"; ans.Err.Error() != want {
		t.Errorf("reason %q, want %q", ans.Err, want)
	}
	want := [2]string{`safe-agent stopped asking about key "comment-SHA256:k" (SHA256:k)`,
		"3 requests to use this key through here → jump.example (forwarded) were refused or went unanswered within 1m.\n" +
			"Further requests are refused without asking for 2m."}
	if got := n.list(); len(got) != 1 || got[0] != want {
		t.Errorf("notifications %q\nwant [%q]", got, want)
	}
}
