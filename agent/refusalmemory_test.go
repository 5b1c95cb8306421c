package agent

import (
	"errors"
	"testing"
	"time"
)

func TestRefusalMemoryWindow(t *testing.T) {
	var m refusalMemory
	t0 := time.Unix(1000, 0)
	if err := m.check(t0, 10*time.Second); err != nil {
		t.Fatalf("nothing refused yet: %v", err)
	}
	m.note(t0)
	err := m.check(t0.Add(3500*time.Millisecond), 10*time.Second)
	var ref *refusal
	if !errors.As(err, &ref) || ref.rule != "refusal_memory" ||
		ref.reason[:len("you refused a request on this connection 3s ago")] != "you refused a request on this connection 3s ago" {
		t.Fatalf("3.5s after a refusal: %v, want a refusal_memory refusal 3s ago", err)
	}
	if err := m.check(t0.Add(10*time.Second), 10*time.Second); err != nil {
		t.Errorf("at the end of the window: %v, want asked again", err)
	}
	if err := m.check(t0.Add(time.Second), 0); err != nil {
		t.Errorf("refusal_memory 0 (off): %v", err)
	}
	for outcome, want := range map[string]bool{"no": true, "timeout": true, "error": false, "cancelled": false, "busy": false, "cooldown": false, "yes": false} {
		if refusedByPerson(outcome) != want {
			t.Errorf("refusedByPerson(%q) = %v, want %v", outcome, !want, want)
		}
	}
}
