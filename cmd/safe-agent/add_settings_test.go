package main

import (
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/policy"
)

func TestMergeSettingsKeepsWhatIsNotGiven(t *testing.T) {
	two := 2
	old := policy.Settings{Confirm: true, Allow: []string{"a"}, Deny: []string{"x"}, MaxForwardDepth: &two, Lifetime: time.Hour}
	given := policy.Settings{Allow: []string{"a", "b"}, Deny: []string{""}}
	f := addFlags{changed: func(name string) bool { return name == "allow" || name == "deny" }}
	got := mergeSettings(old, given, f)
	if !got.Confirm || strings.Join(got.Allow, ",") != "a,b" || len(got.Deny) != 0 || got.MaxForwardDepth != &two || got.Lifetime != time.Hour {
		t.Fatalf("merged %+v: want confirm, depth and lifetime kept, allow replaced, deny cleared by --deny \"\"", got)
	}
	if ch := strings.Join(settingsChanges(old, got, "c", "c"), "; "); ch != "allow [a] → [a, b]; deny [x] → []" {
		t.Errorf("changes = %q", ch)
	}
	// Without cobra's answer every flag counts as given.
	if got := mergeSettings(old, given, addFlags{}); got.Confirm || got.Lifetime != 0 || got.MaxForwardDepth != nil {
		t.Errorf("all flags given: %+v, want exactly the given settings", got)
	}
	one := 1
	ch := settingsChanges(policy.Settings{}, policy.Settings{Confirm: true, MaxForwardDepth: &one, Lifetime: 90 * time.Minute}, "old", "new")
	if s := strings.Join(ch, "; "); s != `confirm no → yes; max forward depth (policy) → 1; lifetime none → 1h30m; comment "old" → "new"` {
		t.Errorf("changes = %q", s)
	}
	for d, want := range map[time.Duration]string{0: "none", 8 * time.Hour: "8h", 90 * time.Second: "1m30s", 45 * time.Minute: "45m"} {
		if got := lifetimeText(d); got != want {
			t.Errorf("lifetimeText(%s) = %q, want %q", d, got, want)
		}
	}
}
