package policy

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUpstreamSettings(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	t.Setenv("SAFE_AGENT_TEST_UNSET", "")
	src := `upstream = ["~/.yubikey-agent.sock", "$XDG_RUNTIME_DIR/gnupg/S.gpg-agent.ssh", "${XDG_RUNTIME_DIR}/gnupg/S.gpg-agent.ssh", "$SAFE_AGENT_TEST_UNSET/x.sock", "rel.sock"]
upstream_timeout = "2s"
`
	p, err := Parse("/etc/sa/policy.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(home, ".yubikey-agent.sock"), "/run/user/1000/gnupg/S.gpg-agent.ssh", "/etc/sa/rel.sock"}
	if got := p.Upstreams(); !slices.Equal(got, want) {
		t.Errorf("Upstreams() = %q, want %q (expanded, duplicates once, unset variable skipped)", got, want)
	}
	if got := p.UpstreamTimeout(); got != 2*time.Second {
		t.Errorf("UpstreamTimeout() = %v, want 2s", got)
	}
	if w := strings.Join(p.Warnings(), "\n"); !strings.Contains(w, `upstream "$SAFE_AGENT_TEST_UNSET/x.sock" ignored: $SAFE_AGENT_TEST_UNSET not set`) {
		t.Errorf("warnings %q do not name the unset variable", w)
	}
	if d := Default(); d.UpstreamTimeout() != DefaultUpstreamTimeout || len(d.Upstreams()) != 0 {
		t.Errorf("defaults: timeout %v, upstreams %q", d.UpstreamTimeout(), d.Upstreams())
	}
}

func TestUpstreamSettingErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"upstream = \"/x.sock\"\n", `p.toml:1:12: upstream must be a list of strings, like upstream = ["…"]`},
		{"upstream = [\"\"]\n", `p.toml:1:13: upstream has an empty socket path`},
		{"upstream_timeout = \"0s\"\n", `p.toml:1:20: upstream_timeout must be longer than 0s, like "30s"`},
		{"upstream_timeout = \"soon\"\n", `p.toml:1:20: upstream_timeout = "soon" is not a duration: write it like "90s", "5m" or "1h30m"`},
	} {
		_, err := Parse("p.toml", []byte(tc.src), nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %s", tc.src, err, tc.want)
		}
	}
}
