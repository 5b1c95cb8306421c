package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAddPicksUpCertificate: `safe-agent add KEY` loads KEY-cert.pub beside
// the key, as ssh-add does, and `safe-agent list` describes it; an expired
// certificate is reported and not loaded, the key still is.
func TestAddPicksUpCertificate(t *testing.T) {
	need(t, "ssh-keygen", "openssh-client")
	a := startAgent(t, agentOpts{args: []string{"--keystore", "none"}})
	dir := t.TempDir()
	keygen := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v\n%s", args, err, out)
		}
	}
	ca := filepath.Join(dir, "ca")
	keygen("-q", "-t", "ed25519", "-N", "", "-f", ca)
	key := newKey(t, dir, "tsh", "ed25519", 0)
	keygen("-q", "-s", ca, "-I", "alice@corp", "-n", "alice,deploy", "-V", "-5m:+1h", key+".pub")

	out := a.mustRun(agentBin(), "add", "--no-store", key)
	if !strings.Contains(out, `certificate `+key+`-cert.pub "alice@corp" loaded for this session (expires in 59m`) && !strings.Contains(out, `certificate `+key+`-cert.pub "alice@corp" loaded for this session (expires in 1h00m`) {
		t.Errorf("add output:\n%s", out)
	}
	if l := a.mustRun("ssh-add", "-l"); !strings.Contains(l, "(ED25519-CERT)") || !strings.Contains(l, "(ED25519)") {
		t.Errorf("ssh-add -l does not list the key and its certificate:\n%s", l)
	}
	list := a.mustRun(agentBin(), "list", "--keystore", "none")
	caFP := strings.Fields(a.mustRun("ssh-keygen", "-lf", ca+".pub"))[1]
	if !strings.Contains(list, `"alice@corp": principals alice, deploy; CA `+caFP+"; expires in 59m") && !strings.Contains(list, `"alice@corp": principals alice, deploy; CA `+caFP+"; expires in 1h00m") {
		t.Errorf("list does not describe the certificate:\n%s", list)
	}

	old := newKey(t, dir, "old", "ed25519", 0)
	keygen("-q", "-s", ca, "-I", "old@corp", "-n", "alice", "-V", "-2h:-1h", old+".pub")
	out = a.mustRun(agentBin(), "add", "--no-store", old)
	if !strings.Contains(out, "loaded into the agent") || !strings.Contains(out, `certificate `+old+`-cert.pub (expired) not added`) {
		t.Errorf("expired certificate:\n%s", out)
	}
}
