package main

import (
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/policy"
)

func TestEditDistanceNearest(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"you@lapto", "you@laptop", 1}, {"wrok", "work", 2}, {"kitten", "sitting", 3}, {"é", "e", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
	names := []string{"you@laptop", "work", "deploy-bot"}
	for in, want := range map[string]string{"you@lapto": "you@laptop", "Work": "work", "wrok": "work", "zzzzzz": "", "deploybot": "deploy-bot"} {
		if got := nearest(in, names); got != want {
			t.Errorf("nearest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAgentKeysResolve(t *testing.T) {
	depth := 0
	ak := agentKeys{socket: "/s", status: &agent.Status{}, keys: []listedKey{
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:a", Comment: "you@laptop", Confirm: true, Allow: []string{"jump"}, MaxForwardDepth: &depth}, Loaded: true},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:b", Comment: "twin"}, InStore: true},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:c", Comment: "twin"}, Loaded: true},
	}}
	ts, err := explainTargets("you@laptop", ak)
	if err != nil || len(ts) != 1 {
		t.Fatalf("resolve: %v %v", ts, err)
	}
	want := policy.Settings{Confirm: true, Allow: []string{"jump"}, MaxForwardDepth: &depth}
	if got := ts[0].settings; got.Confirm != want.Confirm || strings.Join(got.Allow, ",") != "jump" || got.MaxForwardDepth == nil || *got.MaxForwardDepth != 0 {
		t.Errorf("settings %+v", got)
	}
	if ts[0].key.Fingerprint != "SHA256:a" || !strings.Contains(ts[0].from, "loaded in the agent; its own settings: confirm every use; allow jump; max forward depth 0") {
		t.Errorf("target %+v", ts[0])
	}
	if ts, err := explainTargets("SHA256:b", ak); err != nil || ts[0].key.Comment != "twin" || !strings.Contains(ts[0].from, "stored in the keyring (not loaded)") {
		t.Errorf("by fingerprint: %+v %v", ts, err)
	}
	if _, err := explainTargets("twin", ak); err == nil || !strings.Contains(err.Error(), `--key "twin" names 2 keys (SHA256:b, SHA256:c): give the fingerprint`) {
		t.Errorf("two keys: %v", err)
	}
	if _, err := explainTargets("you@lapto", ak); err == nil || !strings.Contains(err.Error(), `no key matches "you@lapto" in the agent on /s or its keystore: did you mean you@laptop?`) {
		t.Errorf("typo: %v", err)
	}
	// Without an agent the key is taken as written.
	if ts, err := explainTargets("you@lapto", agentKeys{}); err != nil || ts[0].key.Comment != "you@lapto" || ts[0].from != "" {
		t.Errorf("no agent: %+v %v", ts, err)
	}
}

func TestUnmatchedSections(t *testing.T) {
	p, err := policy.Parse("p.toml", []byte(`[[key]]
match = "you@lapto"
[[key]]
match = "work-*"
[[key]]
match = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
`), func(string) ([]byte, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	ak := agentKeys{status: &agent.Status{}, keys: []listedKey{
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", Comment: "you@laptop"}, Loaded: true},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:x", Comment: "home"}, InStore: true},
	}}
	got := ak.unmatchedSections(p)
	want := []string{
		`[[key]] match "you@lapto" matches no key loaded in the agent or stored, so its rules apply to none of them: did you mean you@laptop?`,
		`[[key]] match "work-*" matches no key loaded in the agent or stored, so its rules apply to none of them`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
