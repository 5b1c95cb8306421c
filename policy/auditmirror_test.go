package policy

import (
	"strings"
	"testing"
)

func TestAuditMirrorSetting(t *testing.T) {
	noFiles := func(string) ([]byte, error) { return nil, nil }
	for _, tc := range []struct{ file, want string }{
		{``, "none"},
		{`audit_mirror = "journal"`, "journal"},
		{`audit_mirror = "syslog"`, "syslog"},
		{`audit_mirror = "none"`, "none"},
	} {
		p, err := Parse("policy.toml", []byte("known_hosts = []\n"+tc.file+"\n"), noFiles)
		if err != nil {
			t.Fatalf("%q: %v", tc.file, err)
		}
		if got := p.AuditMirror(); got != tc.want {
			t.Errorf("%q: AuditMirror() = %q, want %q", tc.file, got, tc.want)
		}
	}
	if got := Default().AuditMirror(); got != "none" {
		t.Errorf("built-in default: %q, want none", got)
	}
	_, err := Parse("policy.toml", []byte("known_hosts = []\naudit_mirror = \"journald\"\n"), noFiles)
	if err == nil || !strings.Contains(err.Error(), `policy.toml:2:`) ||
		!strings.Contains(err.Error(), `audit_mirror = "journald" is not one of "none", "journal", "syslog"`) {
		t.Errorf("typo: err = %v", err)
	}
}
