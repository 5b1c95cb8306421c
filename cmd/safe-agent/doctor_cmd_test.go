package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safe-agent/safe-agent/agent"
)

func TestParseOpenSSHVersion(t *testing.T) {
	for _, tc := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11 19 Sep 2023", 9, 2, true},
		{"OpenSSH_8.9p1 Ubuntu-3ubuntu0.6, OpenSSL 3.0.2 15 Mar 2022", 8, 9, true},
		{"OpenSSH_8.4p1 Debian-5+deb11u3, OpenSSL 1.1.1w  11 Sep 2023", 8, 4, true},
		{"OpenSSH_10.0p2, LibreSSL 3.3.6", 10, 0, true},
		{"OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2", 8, 1, true},
		{"Sun_SSH_1.1", 0, 0, false},
		{"", 0, 0, false},
	} {
		ma, mi, ok := parseOpenSSHVersion(tc.in)
		if ma != tc.major || mi != tc.minor || ok != tc.ok {
			t.Errorf("parseOpenSSHVersion(%q) = %d, %d, %v; want %d, %d, %v", tc.in, ma, mi, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestCheckOpenSSH(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version string
		missing bool
		want    checkStatus
		msg     string
	}{
		{"new", "OpenSSH_9.2p1 Debian-2, OpenSSL 3.0.11", false, checkOK, "sends session-bind"},
		{"8.9", "OpenSSH_8.9p1 Ubuntu-3", false, checkOK, "sends session-bind"},
		{"old", "OpenSSH_8.4p1 Debian-5, OpenSSL 1.1.1w", false, checkFail, "is older than OpenSSH 8.9: it does not send session-bind"},
		{"7.x", "OpenSSH_7.9p1", false, checkFail, "is older than OpenSSH 8.9"},
		{"unknown", "Dropbear v2022.83", false, checkWarn, "cannot tell the version"},
		{"missing", "", true, checkFail, "not on PATH"},
	} {
		env := doctorEnv{
			lookPath: func(string) (string, error) {
				if tc.missing {
					return "", exec.ErrNotFound
				}
				return "/usr/bin/ssh", nil
			},
			sshVersion: func(string) (string, error) { return tc.version + "\n", nil },
		}
		r := checkOpenSSH(env)
		if r.Status != tc.want || !strings.Contains(r.Msg, tc.msg) || (tc.want != checkOK && r.Fix == "") {
			t.Errorf("%s: %v %q fix %q; want %v %q and a fix", tc.name, r.Status, r.Msg, r.Fix, tc.want, tc.msg)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"*.internal", "db.internal", true},
		{"*.internal", "internal", false},
		{"db?.internal", "db1.internal", true},
		{"db?.internal", "db10.internal", false},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
	} {
		if got := globMatch(tc.pat, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pat, tc.s, got)
		}
	}
}

func TestPolicyHostNames(t *testing.T) {
	p := filepath.Join(t.TempDir(), "policy.toml")
	os.WriteFile(p, []byte(`known_hosts = ["kh"]
[defaults]
allow = ["jump.example", "Jump.Example>*.internal"]
[[key]]
match = "work"
allow = ["github.com", "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"]
deny = ["[git.example]:2222"]
`), 0o600)
	st := &agent.Status{Keys: []agent.KeyInfo{{Allow: []string{"bastion>db.internal"}}}}
	got := strings.Join(policyHostNames(p, st), " ")
	if want := "jump.example *.internal github.com [git.example]:2222 bastion db.internal"; got != want {
		t.Errorf("names %q, want %q", got, want)
	}
}

func TestCheckAuditLog(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "audit.jsonl")
	os.WriteFile(existing, nil, 0o600)
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	os.WriteFile(filepath.Join(dir, "afile"), nil, 0o600)
	for _, tc := range []struct {
		path string
		want checkStatus
		msg  string
	}{
		{existing, checkOK, "is writable"},
		{filepath.Join(dir, "new", "deeper", "audit.jsonl"), checkOK, "does not exist yet; the agent can create it"},
		{filepath.Join(dir, "adir"), checkFail, "is a directory"},
		{filepath.Join(dir, "afile", "audit.jsonl"), checkFail, "not a directory"},
	} {
		r := checkAuditLog(tc.path)
		if r.Status != tc.want || !strings.Contains(r.Msg, tc.msg) {
			t.Errorf("%s: %v %q, want %v %q", tc.path, r.Status, r.Msg, tc.want, tc.msg)
		}
	}
	if es, _ := os.ReadDir(filepath.Join(dir)); len(es) != 3 {
		t.Errorf("the check left files behind: %v", es)
	}
}

func TestCheckPolicyFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[defaults]\nconfirm = \"sometimes\"\n"), 0o600)
	p, r := checkPolicyFile(bad, true, nil)
	if p != nil || r.Status != checkFail || !strings.Contains(r.Msg, bad+":2:") || !strings.Contains(r.Fix, "safe-agent policy check "+bad) {
		t.Errorf("invalid file: %v %q fix %q", r.Status, r.Msg, r.Fix)
	}
	_, r = checkPolicyFile(filepath.Join(dir, "missing.toml"), false, nil)
	if r.Status == checkFail || !strings.Contains(r.Msg, "the built-in defaults apply") {
		t.Errorf("missing default file: %v %q", r.Status, r.Msg)
	}
	_, r = checkPolicyFile(filepath.Join(dir, "missing.toml"), true, nil)
	if r.Status != checkFail || !strings.Contains(r.Msg, "does not exist, but it was named") {
		t.Errorf("missing named file: %v %q", r.Status, r.Msg)
	}
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte("known_hosts = []\n[defaults]\nconfirm = \"always\"\n"), 0o600)
	_, r = checkPolicyFile(good, true, &agent.Status{PolicyError: "good.toml:3:1: bad"})
	if r.Status != checkFail || !strings.Contains(r.Msg, "the agent's last reload failed") {
		t.Errorf("agent reload failure: %v %q", r.Status, r.Msg)
	}
}

func TestCheckStatusOrder(t *testing.T) {
	if !(checkOK < checkSkip && checkSkip < checkWarn && checkWarn < checkFail) {
		t.Fatal("statuses must be ordered by severity")
	}
}
