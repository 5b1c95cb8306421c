package agent

import (
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/policy"
)

// The prompt offers "Allow <program> for N" only for a local request from
// a program whose executable was read consistently, and never for a key
// added with ssh-add -c; N is the decision's remember, else 10 minutes.
func TestProgramFor(t *testing.T) {
	client := func(exe string) *policy.Client {
		return &policy.Client{Chain: []policy.Proc{{PID: 10, Name: "ssh-keygen", Exe: exe}}}
	}
	good := peerInfo{PID: 10, Exe: "/usr/bin/ssh-keygen", Client: client("/usr/bin/ssh-keygen")}
	req := func(confirm bool, remember time.Duration) *signRequest {
		return &signRequest{id: &identity{Settings: policy.Settings{Confirm: confirm}}, decision: policy.Decision{Verdict: policy.Confirm, Remember: remember}}
	}
	for _, tt := range []struct {
		name   string
		p      peerInfo
		r      *signRequest
		remote bool
		want   time.Duration
	}{
		{"remember unset", good, req(false, 0), false, 10 * time.Minute},
		{"remember set", good, req(false, 3*time.Minute), false, 3 * time.Minute},
		{"ssh-add -c", good, req(true, 0), false, 0},
		{"forwarded", good, req(false, 5*time.Minute), true, 0},
		{"exe unknown", peerInfo{PID: 10, Client: client("")}, req(false, 0), false, 0},
		{"no client chain", peerInfo{PID: 10, Exe: "/usr/bin/ssh-keygen"}, req(false, 0), false, 0},
		{"chain unreadable", peerInfo{PID: 10, Exe: "/usr/bin/ssh-keygen", Client: &policy.Client{Unreadable: "process gone"}}, req(false, 0), false, 0},
		{"exe changed between reads", peerInfo{PID: 10, Exe: "/tmp/evil", Client: client("/usr/bin/ssh-keygen")}, req(false, 0), false, 0},
		{"deleted executable", peerInfo{PID: 10, Exe: "/usr/bin/ssh-keygen (deleted)", Client: client("/usr/bin/ssh-keygen")}, req(false, 0), false, 10 * time.Minute},
	} {
		if got := programFor(tt.p, tt.r, tt.remote); got != tt.want {
			t.Errorf("%s: programFor = %v, want %v", tt.name, got, tt.want)
		}
	}
	// The remembered scope tells executables apart even under one name.
	other := good
	other.Exe = "/tmp/copy/ssh-keygen"
	good.Chain, other.Chain = "ssh-keygen (10) ← bash (9)", "ssh-keygen (11) ← bash (9)"
	if programIdentity(good) == programIdentity(other) {
		t.Errorf("two executables share a program identity: %q", programIdentity(good))
	}
	again := good
	again.Chain = "ssh-keygen (12) ← bash (9)"
	if programIdentity(good) != programIdentity(again) {
		t.Errorf("the same program started again is another program: %q vs %q", programIdentity(good), programIdentity(again))
	}
}
