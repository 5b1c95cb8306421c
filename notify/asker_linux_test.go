//go:build linux

package notify

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// waiters is how many callers wait for the question's prompt, and how many
// prompts are queued behind the one showing.
func (a *Asker) waiters(q Question) (waiting, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.pending[identity(q.KeyFingerprint, q.Scope)]; r != nil {
		waiting = r.waiters
	}
	return waiting, len(a.queue)
}

func newFakeAsker(t *testing.T, f *fake, o AskerOptions) *Asker {
	t.Helper()
	c, err := NewConfirmer(f.path, Env{Display: ":42", Path: "/usr/bin:/bin"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return NewAsker(c, o)
}

// askAsync asks in a goroutine; the answer arrives on the channel.
func askAsync(ctx context.Context, a *Asker, q Question) <-chan Answer {
	ch := make(chan Answer, 1)
	go func() { ch <- a.Ask(ctx, q) }()
	return ch
}

func countCalls(f *fake) func() int { return func() int { return len(f.calls()) } }

// git push opens several connections at once: identical questions that
// wait together get one prompt and share its answer.
func TestAskerIdenticalQuestionsShareOnePrompt(t *testing.T) {
	f := newFake(t, "askpass", "empty wait")
	a := newFakeAsker(t, f, AskerOptions{})
	q := question("SHA256:k", "git push", "github.com", 0)
	var chans []<-chan Answer
	for range 4 {
		chans = append(chans, askAsync(context.Background(), a, q))
	}
	waitFor(t, "4 waiters and a prompt", func() bool {
		w, _ := a.waiters(q)
		return w == 4 && len(f.calls()) == 1
	})
	f.release()
	shared := 0
	for _, ch := range chans {
		ans := <-ch
		if !ans.Yes || ans.Outcome != OutcomeYes || ans.Err != nil {
			t.Errorf("answer %+v, want yes", ans)
		}
		if ans.Shared {
			shared++
		}
	}
	if n := len(f.calls()); n != 1 {
		t.Errorf("%d prompts shown, want 1", n)
	}
	if shared != 3 {
		t.Errorf("%d answers marked shared, want 3", shared)
	}
}

// Different questions get prompts one after the other, in arrival order,
// never two on screen at once.
func TestAskerOnePromptAtATime(t *testing.T) {
	f := newFake(t, "askpass", "empty wait")
	a := newFakeAsker(t, f, AskerOptions{})
	qs := []Question{
		question("SHA256:k", "login", "db", 0),
		question("SHA256:k", "git", "here", 0),
		question("SHA256:other", "login", "db", 0),
	}
	var chans []<-chan Answer
	for i, q := range qs {
		chans = append(chans, askAsync(context.Background(), a, q))
		waitFor(t, "question "+strconv.Itoa(i)+" to be shown or queued", func() bool {
			_, queued := a.waiters(qs[0])
			return len(f.calls()) == 1 && queued == i
		})
	}
	if n := len(f.calls()); n != 1 {
		t.Fatalf("%d prompts on screen at once, want 1", n)
	}
	f.release()
	for _, ch := range chans {
		if ans := <-ch; ans.Outcome != OutcomeYes {
			t.Errorf("answer %+v, want yes", ans)
		}
	}
	calls := f.calls()
	if len(calls) != 3 {
		t.Fatalf("%d prompts, want 3", len(calls))
	}
	for i, c := range calls {
		if want := qs[i].Prompt.Text(); c.text != want {
			t.Errorf("prompt %d says %q, want %q", i, c.text, want)
		}
	}
	if o := f.read("overlap"); o != "" {
		t.Errorf("prompts overlapped (pids %s)", strings.Fields(o))
	}
	var want []string
	for _, c := range calls {
		want = append(want, "start "+strconv.Itoa(c.pid), "end "+strconv.Itoa(c.pid))
	}
	if got := strings.Fields(f.read("events")); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %q, want %q", got, want)
	}
}

// A client that disconnects while queued leaves without being asked.
func TestAskerCancelledWaiterLeavesQueue(t *testing.T) {
	f := newFake(t, "askpass", "empty wait")
	a := newFakeAsker(t, f, AskerOptions{})
	first := question("SHA256:k", "login", "db", 0)
	second := question("SHA256:k", "login", "other", 0)
	firstAns := askAsync(context.Background(), a, first)
	waitFor(t, "the first prompt", func() bool { return len(f.calls()) == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	secondAns := askAsync(ctx, a, second)
	waitFor(t, "the second question to queue", func() bool { _, q := a.waiters(first); return q == 1 })
	cancel()
	ans := <-secondAns
	if ans.Yes || ans.Outcome != OutcomeCancelled || ans.Err == nil {
		t.Errorf("cancelled waiter got %+v, want cancelled", ans)
	}
	if _, q := a.waiters(first); q != 0 {
		t.Errorf("%d questions still queued, want 0", q)
	}
	f.release()
	if ans := <-firstAns; ans.Outcome != OutcomeYes {
		t.Errorf("first answer %+v, want yes", ans)
	}
	if n := len(f.calls()); n != 1 {
		t.Errorf("%d prompts shown, want 1 (the cancelled question must not be asked)", n)
	}
}

// When the only caller waiting for a prompt on screen goes away, the
// prompt is taken down; the Asker goes on with the next question.
func TestAskerAbandonedPromptIsKilled(t *testing.T) {
	f := newFake(t, "askpass", "hang")
	a := newFakeAsker(t, f, AskerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	ch := askAsync(ctx, a, question("SHA256:k", "login", "db", time.Hour))
	waitFor(t, "the prompt", func() bool { return f.read("children") != "" })
	cancel()
	if ans := <-ch; ans.Outcome != OutcomeCancelled {
		t.Errorf("answer %+v, want cancelled", ans)
	}
	for _, s := range strings.Fields(f.read("children")) {
		pid, _ := strconv.Atoi(s)
		waitFor(t, "prompt process "+s+" to be gone", func() bool { return gone(pid) })
	}
	f.answer("empty")
	if ans := a.Ask(context.Background(), question("SHA256:k", "login", "db", time.Hour)); ans.Outcome != OutcomeYes {
		t.Errorf("next answer %+v, want yes (asked again: the abandoned prompt must not count)", ans)
	}
	if n := len(f.calls()); n != 2 {
		t.Errorf("%d prompts, want 2", n)
	}
}

// One of two callers sharing a prompt leaving does not take it down.
func TestAskerSharedPromptSurvivesOneLeaving(t *testing.T) {
	f := newFake(t, "askpass", "empty wait")
	a := newFakeAsker(t, f, AskerOptions{})
	q := question("SHA256:k", "login", "db", 0)
	ctx, cancel := context.WithCancel(context.Background())
	leaving := askAsync(ctx, a, q)
	staying := askAsync(context.Background(), a, q)
	waitFor(t, "2 waiters", func() bool { w, _ := a.waiters(q); return w == 2 && len(f.calls()) == 1 })
	cancel()
	if ans := <-leaving; ans.Outcome != OutcomeCancelled {
		t.Errorf("leaving caller got %+v, want cancelled", ans)
	}
	f.release()
	if ans := <-staying; ans.Outcome != OutcomeYes {
		t.Errorf("staying caller got %+v, want yes", ans)
	}
}

// At the Asker's Timeout the prompt is killed and the answer is timeout.
func TestAskerTimeout(t *testing.T) {
	f := newFake(t, "askpass", "hang")
	a := newFakeAsker(t, f, AskerOptions{Timeout: 300 * time.Millisecond})
	ans := a.Ask(context.Background(), question("SHA256:k", "login", "db", 0))
	if ans.Yes || ans.Outcome != OutcomeTimeout {
		t.Fatalf("answer %+v, want timeout", ans)
	}
	for _, s := range strings.Fields(f.read("children")) {
		pid, _ := strconv.Atoi(s)
		waitFor(t, "prompt process "+s+" to be gone", func() bool { return gone(pid) })
	}
}

// Many callers, many questions, cancellations: every caller gets an
// answer and prompts never overlap (run with -race).
func TestAskerStress(t *testing.T) {
	f := newFake(t, "askpass", "empty")
	a := newFakeAsker(t, f, AskerOptions{})
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%5 == 0 {
				cancel()
			}
			ans := a.Ask(ctx, question("SHA256:k", strconv.Itoa(i%4), "db", 0))
			if ans.Outcome != OutcomeYes && ans.Outcome != OutcomeCancelled {
				t.Errorf("caller %d: %+v", i, ans)
			}
		})
	}
	wg.Wait()
	if o := f.read("overlap"); o != "" {
		t.Errorf("prompts overlapped (pids %s)", strings.Fields(o))
	}
}
