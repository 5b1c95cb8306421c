package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/safe-agent/safe-agent/agent"
)

func TestUpstreamStatusLines(t *testing.T) {
	ups := []agent.UpstreamStatus{
		{Socket: "/run/user/1000/yubikey-agent.sock", Reachable: true, Keys: 1},
		{Socket: "/run/user/1000/gnupg/S.gpg-agent.ssh", Reachable: true, Keys: 2},
		{Socket: "/home/u/.1password/agent.sock", LastError: "connect: connection refused"},
	}
	st := agent.Status{PID: 42, Started: time.Unix(0, 0), Keys: []agent.KeyInfo{}, Upstreams: ups}
	var b bytes.Buffer
	printStatus(&b, statusReport{Status: st}, "/s", time.Unix(60, 0))
	for _, want := range []string{
		"\nupstream /run/user/1000/yubikey-agent.sock: reachable, 1 key\n",
		"\nupstream /run/user/1000/gnupg/S.gpg-agent.ssh: reachable, 2 keys\n",
		"\nupstream /home/u/.1password/agent.sock: unreachable (last error: connect: connection refused)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	js, err := json.Marshal(statusReport{Status: st})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"upstreams":[{"socket":"/run/user/1000/yubikey-agent.sock","reachable":true,"keys":1},`) ||
		!strings.Contains(string(js), `"last_error":"connect: connection refused"`) {
		t.Errorf("status --json: %s", js)
	}

	res := checkUpstreams(&st)
	if len(res) != 3 {
		t.Fatalf("doctor: %d upstream checks, want 3", len(res))
	}
	if res[0].Name != "upstream" || res[0].Status != checkOK || res[0].Msg != "/run/user/1000/yubikey-agent.sock reachable with 1 key" {
		t.Errorf("doctor, reachable upstream: %+v", res[0])
	}
	if r := res[2]; r.Status != checkWarn || !strings.Contains(r.Msg, "unreachable: connect: connection refused") || !strings.Contains(r.Fix, "start the agent") {
		t.Errorf("doctor, unreachable upstream: %+v", r)
	}
	if checkUpstreams(nil) != nil {
		t.Error("doctor without a running agent checks upstreams")
	}
}

func TestListMarksUpstreamKeys(t *testing.T) {
	var b bytes.Buffer
	printKeyTable(&b, []listedKey{
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:own", Type: "ssh-ed25519", Comment: "laptop"}, Loaded: true},
		{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:tok", Type: "ecdsa-sha2-nistp256", Comment: "token", Upstream: "/run/up.sock"}, Loaded: true},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || strings.Contains(lines[1], "upstream") || !strings.HasSuffix(lines[2], "(upstream /run/up.sock)") {
		t.Errorf("list:\n%s", b.String())
	}
	js, _ := json.Marshal(listedKey{KeyInfo: agent.KeyInfo{Fingerprint: "SHA256:tok", Upstream: "/run/up.sock"}})
	if !strings.Contains(string(js), `"upstream":"/run/up.sock"`) {
		t.Errorf("list --json: %s", js)
	}
}
