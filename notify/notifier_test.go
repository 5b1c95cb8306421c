package notify

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestShouldNotify(t *testing.T) {
	type event struct{ denied, forwarded bool }
	local, localDenied := event{false, false}, event{true, false}
	fwd, fwdDenied := event{false, true}, event{true, true}
	tests := []struct {
		mode string
		yes  []event
		no   []event
	}{
		{NotifyNever, nil, []event{local, localDenied, fwd, fwdDenied}},
		{NotifyForwarded, []event{fwd, fwdDenied}, []event{local, localDenied}},
		{NotifyDenied, []event{localDenied, fwd, fwdDenied}, []event{local}},
		{"", []event{localDenied, fwd, fwdDenied}, []event{local}},
		{"bogus", []event{localDenied, fwd, fwdDenied}, []event{local}},
		{NotifyAlways, []event{local, localDenied, fwd, fwdDenied}, nil},
	}
	for _, tt := range tests {
		for _, e := range tt.yes {
			if !ShouldNotify(tt.mode, e.denied, e.forwarded) {
				t.Errorf("ShouldNotify(%q, denied=%v, forwarded=%v) = false, want true", tt.mode, e.denied, e.forwarded)
			}
		}
		for _, e := range tt.no {
			if ShouldNotify(tt.mode, e.denied, e.forwarded) {
				t.Errorf("ShouldNotify(%q, denied=%v, forwarded=%v) = true, want false", tt.mode, e.denied, e.forwarded)
			}
		}
	}
}

// blockingSend records notifications; each waits for a token on gate.
type blockingSend struct {
	gate chan struct{}
	mu   sync.Mutex
	got  []string
	in   chan struct{} // one value each time a send starts
}

func newBlockingSend() *blockingSend {
	return &blockingSend{gate: make(chan struct{}), in: make(chan struct{}, 100)}
}

func (b *blockingSend) send(title, body string) error {
	b.in <- struct{}{}
	<-b.gate
	b.mu.Lock()
	b.got = append(b.got, title)
	b.mu.Unlock()
	return fmt.Errorf("test: no daemon")
}

func (b *blockingSend) titles() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// A stuck notification daemon never blocks Notify; when the queue fills,
// the oldest waiting notifications are dropped and logged.
func TestNotifierNeverBlocksAndDropsOldest(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := newBlockingSend()
	n, err := newNotifier(NotifyAlways, log, b.send)
	if err != nil {
		t.Fatal(err)
	}
	n.Notify("n0", "")
	<-b.in // n0 is being sent and stuck
	returned := make(chan struct{})
	go func() {
		for i := 1; i <= queueSize+5; i++ {
			n.Notify(fmt.Sprintf("n%d", i), "")
		}
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Notify blocked while the daemon was stuck")
	}
	close(b.gate) // the daemon wakes up
	n.Close()
	var want []string
	want = append(want, "n0")
	for i := 6; i <= queueSize+5; i++ {
		want = append(want, fmt.Sprintf("n%d", i))
	}
	if got := b.titles(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sent %q\nwant %q", got, want)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if c := strings.Count(logs.String(), "notification queue full; dropped the oldest"); c != 5 {
		t.Errorf("%d drop lines logged, want 5:\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), `msg="desktop notification not shown" title=n0 err="test: no daemon"`) {
		t.Errorf("send error not logged at debug:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNotifierModes(t *testing.T) {
	var sent []string
	var mu sync.Mutex
	send := func(title, body string) error {
		mu.Lock()
		sent = append(sent, title+": "+body)
		mu.Unlock()
		return nil
	}
	never, err := newNotifier(NotifyNever, nil, send)
	if err != nil {
		t.Fatal(err)
	}
	never.Notify("x", "y")
	never.Close()
	if len(sent) != 0 {
		t.Errorf("mode never sent %q", sent)
	}
	if _, err := newNotifier("sometimes", nil, send); err == nil || err.Error() != `notify "sometimes": use never, denied, forwarded or always` {
		t.Errorf("bad mode: err = %v", err)
	}
	def, err := newNotifier("", nil, send)
	if err != nil || def.Mode() != NotifyDenied {
		t.Fatalf("empty mode: %v, %v; want the default %q", def.Mode(), err, NotifyDenied)
	}
	def.Notify("a", "b")
	def.Close()
	def.Notify("after", "close") // dropped, no panic
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(sent, "|") != "a: b" {
		t.Errorf("sent %q, want [a: b]", sent)
	}
}

// Notification bodies are markup for dunst and GNOME: client-supplied
// text must not add markup, whatever it holds.
func TestEscapeMarkup(t *testing.T) {
	for in, want := range map[string]string{
		"deploy":                           "deploy",
		"<b>admin</b>":                     "&lt;b&gt;admin&lt;/b&gt;",
		`</span><span size="80000">OK`:     `&lt;/span&gt;&lt;span size="80000"&gt;OK`,
		"a &amp; b & c":                    "a &amp;amp; b &amp; c",
		"'quoted' \"too\" → é":             "'quoted' \"too\" → é",
		"<a href='https://evil'>click</a>": "&lt;a href='https://evil'&gt;click&lt;/a&gt;",
	} {
		if got := escapeMarkup(in); got != want {
			t.Errorf("escapeMarkup(%q) = %q, want %q", in, got, want)
		}
	}
}
