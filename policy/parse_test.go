package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	const fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
	tests := []struct {
		name string
		src  string
		want string // the whole error text
	}{
		{"TOML syntax",
			"unknown_destination = \"deny\"\n[defaults\nconfirm = \"always\"\n",
			`/etc/policy.toml:2:10: invalid TOML: expected '.' or ']' to end table name, but got '\n' instead`},
		{"unknown top-level field",
			"\nknwon_hosts = []\n",
			`/etc/policy.toml:2:1: unknown field "knwon_hosts" in the top level: did you mean "known_hosts"?`},
		{"unknown field in defaults, no close match",
			"[defaults]\n  colour = \"blue\"\n",
			`/etc/policy.toml:2:3: unknown field "colour" in [defaults]; known fields: allow, deny, max_forward_depth, confirm, remember, namespaces, clients`},
		{"unknown field in the second [[key]]",
			"[[key]]\nmatch = \"a\"\nalow = []\n\n[[key]]\nmatch = \"b\"\n alow = []\n",
			"/etc/policy.toml:3:1: unknown field \"alow\" in [[key]]: did you mean \"allow\"?\n" +
				"/etc/policy.toml:7:2: unknown field \"alow\" in [[key]]: did you mean \"allow\"?"},
		{"bad duration",
			"[[key]]\nmatch = \"a\"\n\n[[key]]\nmatch = \"b\"\nremember = \"5 minutes\"\n",
			`/etc/policy.toml:6:12: remember = "5 minutes" is not a duration: write it like "90s", "5m" or "1h30m"`},
		{"duration not a string",
			"confirm_timeout = 30\n",
			`/etc/policy.toml:1:19: confirm_timeout must be a duration in quotes, like "5m" or "30s"`},
		{"bad pattern in a multi-line list",
			"[[key]]\nmatch = \"a\"\nallow = [\n  \"jump.example\",\n  \"jump.example>>db\",  # typo\n]\n",
			`/etc/policy.toml:5:3: bad pattern in allow: destination "jump.example>>db" has an empty host around ">": write it like "jump.example>db.internal"`},
		{"bad pattern: space in a host",
			"[defaults]\ndeny = [\"db internal\"]\n",
			`/etc/policy.toml:2:9: bad pattern in deny: destination "db internal": host "db internal" contains ' '; a host is letters, digits, '.', '-', '_', ':' and the wildcards '*' and '?'`},
		{"bad pattern: port",
			"[defaults]\nallow = [\"[git.example]:99999\"]\n",
			`/etc/policy.toml:2:10: bad pattern in allow: destination "[git.example]:99999": host "[git.example]:99999": port "99999" is not a number from 1 to 65535`},
		{"bad pattern: fingerprint",
			"[defaults]\nallow = [\"SHA256:abc\"]\n",
			`/etc/policy.toml:2:10: bad pattern in allow: destination "SHA256:abc": "SHA256:abc" is not a SHA256 fingerprint; copy it from ` + "`ssh-keygen -lf KEYFILE`" + ` (SHA256: and 43 characters)`},
		{"bad enum",
			"[defaults]\nconfirm = \"sometimes\"\n",
			`/etc/policy.toml:2:11: confirm = "sometimes" is not one of "never", "always", "forwarded"`},
		{"bad top-level enum",
			"unknown_destination = \"ask\"\n",
			`/etc/policy.toml:1:23: unknown_destination = "ask" is not one of "allow", "confirm", "deny"`},
		{"bad notify",
			"notify = \"sometimes\"\n",
			`/etc/policy.toml:1:10: notify = "sometimes" is not one of "never", "denied", "forwarded", "always"`},
		{"depth of the wrong type",
			"[defaults]\nmax_forward_depth = \"one\"\n",
			`/etc/policy.toml:2:21: max_forward_depth must be a whole number from 0 to 16, like max_forward_depth = 1`},
		{"negative depth",
			"[[key]]\nmatch = \"a\"\nmax_forward_depth = -1\n",
			`/etc/policy.toml:3:21: max_forward_depth = -1 is out of range: use 0 (never through a forwarded agent) to 16`},
		{"[[key]] without match",
			"[[key]]\nallow = [\"x\"]\n",
			`/etc/policy.toml:1:1: [[key]] needs match = "SHA256:…" (a key fingerprint), a comment glob like "work-*", "ca:SHA256:…" or "principal:NAME"`},
		{"bad fingerprint match",
			"[[key]]\nmatch = \"SHA256:nope\"\n",
			`/etc/policy.toml:2:9: match: "SHA256:nope" is not a SHA256 fingerprint; copy it from ` + "`ssh-keygen -lf KEYFILE`" + ` (SHA256: and 43 characters)`},
		{"list of the wrong type",
			"[defaults]\nallow = \"jump.example\"\n",
			`/etc/policy.toml:2:9: allow must be a list of strings, like allow = ["…"]`},
		{"list element of the wrong type",
			"known_hosts = [\"a\", 3]\n",
			`/etc/policy.toml:1:21: known_hosts[1] must be a string in quotes, not a number`},
		{"defaults not a table",
			"defaults = 3\n",
			`/etc/policy.toml:1:12: defaults must be a table: write [defaults] on a line of its own`},
		{"inline array of key tables",
			"key = [{match = \"" + fp + "\"}, {match = \"b\", confirm = \"maybe\"}]\n",
			`/etc/policy.toml:1:96: confirm = "maybe" is not one of "never", "always", "forwarded"`},
		{"inline key table without match",
			"key = [\n  {allow = []},\n]\n",
			`/etc/policy.toml:2:3: [[key]] needs match = "SHA256:…" (a key fingerprint), a comment glob like "work-*", "ca:SHA256:…" or "principal:NAME"`},
		{"position after a multi-line string that looks like a header",
			"prompt = \"\"\"\n[[key]]\n\"\"\"\n[[key]] # real\n'match' = \"a\"\nconfirm = \"x\"\n",
			`/etc/policy.toml:6:11: confirm = "x" is not one of "never", "always", "forwarded"`},
		{"dotted key",
			"defaults.remember = \"soon\"\n",
			`/etc/policy.toml:1:21: remember = "soon" is not a duration: write it like "90s", "5m" or "1h30m"`},
		{"clients: a relative path",
			"[[key]]\nmatch = \"a\"\nclients = [\"git\", \"bin/ssh\"]\n",
			`/etc/policy.toml:3:19: client pattern "bin/ssh": a path must be absolute (like "/usr/bin/ssh"); a name has no /`},
		{"clients: empty",
			"[defaults]\nclients = []\n",
			`/etc/policy.toml:2:11: clients is empty: list the programs that may use the key, like clients = ["git", "ssh"], or remove the line to let any program use it`},
		{"clients: unknown prefix",
			"[[key]]\nmatch = \"a\"\nclients = [\"units:cron.service\"]\n",
			`/etc/policy.toml:3:12: client pattern "units:cron.service": unknown prefix; use unit:, cgroup: or container:, or a plain program name`},
		{"client: no match",
			"[[client]]\nconfirm = \"always\"\n",
			`/etc/policy.toml:1:1: [[client]] needs match: a program name like "git", an absolute path, "unit:NAME", "cgroup:/PATH" or "container:NAME" (or a list of them)`},
		{"client: a typo, a bad cgroup and a bad key match",
			"[[client]]\nmatch = [\"claude\", \"cgroup:user.slice\"]\nkeys = [\"ca:nope\"]\nconfrim = \"always\"\nclients = [\"git\"]\n",
			"/etc/policy.toml:2:20: client pattern \"cgroup:user.slice\": a cgroup path starts with / (cat /proc/self/cgroup shows yours), like \"cgroup:/user.slice/*\"\n" +
				"/etc/policy.toml:3:9: keys \"ca:nope\": after ca: write the CA key's fingerprint (ssh-keygen -lf CA.pub): \"nope\" is not a SHA256 fingerprint; copy it from `ssh-keygen -lf KEYFILE` (SHA256: and 43 characters)\n" +
				"/etc/policy.toml:4:1: unknown field \"confrim\" in [[client]]: did you mean \"confirm\"?\n" +
				"/etc/policy.toml:5:1: unknown field \"clients\" in [[client]]; known fields: name, match, keys, allow, deny, max_forward_depth, confirm, remember, namespaces"},
		{"client: bad restricting fields",
			"[[client]]\nmatch = \"codex\"\nmax_forward_depth = -1\nremember = \"later\"\n",
			"/etc/policy.toml:3:21: max_forward_depth = -1 is out of range: use 0 (never through a forwarded agent) to 16\n" +
				"/etc/policy.toml:4:12: remember = \"later\" is not a duration: write it like \"90s\", \"5m\" or \"1h30m\""},
		{"several problems, in file order",
			"[[key]]\nmatch = \"b\"\nconfirm = \"x\"\n[defaults]\nremember = \"y\"\nfoo = 1\n",
			"/etc/policy.toml:3:11: confirm = \"x\" is not one of \"never\", \"always\", \"forwarded\"\n" +
				"/etc/policy.toml:5:12: remember = \"y\" is not a duration: write it like \"90s\", \"5m\" or \"1h30m\"\n" +
				"/etc/policy.toml:6:1: unknown field \"foo\" in [defaults]; known fields: allow, deny, max_forward_depth, confirm, remember, namespaces, clients"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/etc/policy.toml", []byte(tc.src), files{}.read)
			if err == nil {
				t.Fatalf("no error, want %s", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
			var fe FileErrors
			if !errors.As(err, &fe) || len(fe) == 0 || fe[0].Line < 1 || fe[0].Col < 1 {
				t.Errorf("error is not FileErrors with a position: %#v", err)
			}
		})
	}
}

func TestParseKnownHostsUnreadable(t *testing.T) {
	src := "# policy\nknown_hosts = [\"/ok\", \"/secret\"]\n"
	read := func(name string) ([]byte, error) {
		if name == "/secret" {
			return nil, fmt.Errorf("open /secret: %w", os.ErrPermission)
		}
		return nil, os.ErrNotExist
	}
	_, err := Parse("/etc/policy.toml", []byte(src), read)
	want := "/etc/policy.toml:2:23: cannot read known_hosts file /secret: open /secret: permission denied"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestParseDefaultsAndFields(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	p, err := Parse("/etc/sa/policy.toml", nil, files{}.read)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.KnownHostsFiles(), []string{filepath.Join(home, ".ssh/known_hosts")}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("known_hosts = %v, want %v", got, want)
	}
	if w := p.Warnings(); len(w) != 1 || w[0] != "known_hosts file "+filepath.Join(home, ".ssh/known_hosts")+" does not exist: no host gets a name from it" {
		t.Errorf("warnings = %q", w)
	}
	if p.UnknownDestination() != Confirm || p.ConfirmTimeout() != 30*time.Second || p.NotifyMode() != NotifyDenied || p.Prompt() != "" {
		t.Errorf("top-level defaults: %v %v %v %q", p.UnknownDestination(), p.ConfirmTimeout(), p.NotifyMode(), p.Prompt())
	}
	d := p.defaults
	if d.confirm != confirmForwarded || d.maxDepth != 1 || d.remember != 0 || d.namespaces != nil || d.allow != nil || d.deny != nil {
		t.Errorf("built-in [defaults] = %+v", d)
	}

	src := `
known_hosts = ["~/kh", "rel/kh2", "/abs/kh3"]
unknown_destination = "deny"
prompt = "zenity"
confirm_timeout = "1m"
notify = "forwarded"
[defaults]
confirm = "always"
max_forward_depth = 2
remember = "5m"
namespaces = ["git"]
[[key]]
match = "a"
max_forward_depth = 0
`
	p, err = Parse("/etc/sa/policy.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(p.KnownHostsFiles()), fmt.Sprint([]string{filepath.Join(home, "kh"), "/etc/sa/rel/kh2", "/abs/kh3"}); got != want {
		t.Errorf("known_hosts = %s, want %s", got, want)
	}
	if p.UnknownDestination() != Deny || p.ConfirmTimeout() != time.Minute || p.NotifyMode() != NotifyForwarded || p.Prompt() != "zenity" {
		t.Errorf("top level: %v %v %v %q", p.UnknownDestination(), p.ConfirmTimeout(), p.NotifyMode(), p.Prompt())
	}
	r := p.rules[0]
	if r.maxDepth != 0 || r.depthSrc != `key "a"` || r.confirm != confirmAlways || r.confirmSrc != "defaults" || r.remember != 5*time.Minute || fmt.Sprint(r.namespaces) != "[git]" {
		t.Errorf("[[key]] fallback to [defaults]: %+v", r)
	}
}

func TestParseWarnsAboutShadowedRules(t *testing.T) {
	fp := newTestKey(t, 1).fp()
	tests := []struct {
		name    string
		matches []string
		want    []string // the warnings about [[key]] sections
	}{
		{"glob shadows a literal", []string{"work-*", "work-laptop"}, []string{
			`/etc/policy.toml:4:1: [[key]] match "work-laptop" never applies: the [[key]] at line 1 (match "work-*") comes first and matches the same keys`}},
		{"suffix glob", []string{"*-laptop", "home-*", "work-laptop"}, []string{
			`/etc/policy.toml:7:1: [[key]] match "work-laptop" never applies: the [[key]] at line 1 (match "*-laptop") comes first and matches the same keys`}},
		{"? and narrower glob; the first shadowing rule is named", []string{"home-*", "w?rk-*", "*", "work-a*"}, []string{
			`/etc/policy.toml:10:1: [[key]] match "work-a*" never applies: the [[key]] at line 4 (match "w?rk-*") comes first and matches the same keys`}},
		{"same fingerprint twice", []string{fp, "x*", fp}, []string{
			fmt.Sprintf(`/etc/policy.toml:7:1: [[key]] match %q never applies: the [[key]] at line 1 (match %q) comes first and matches the same keys`, fp, fp)}},
		{"nothing shadowed", []string{"work-*", "home-*", "a*b", "a*", "*b", "w?rk"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var src strings.Builder
			for _, m := range tc.matches {
				fmt.Fprintf(&src, "[[key]]\nmatch = %q\n\n", m)
			}
			p := mustParse(t, src.String(), files{})
			var got []string
			for _, w := range p.Warnings() {
				if strings.Contains(w, "[[key]]") {
					got = append(got, w)
				}
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	if got, err := DefaultPath(); err != nil || got != "/cfg/safe-agent/policy.toml" {
		t.Errorf("DefaultPath = %q, %v", got, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	got, err := DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.UserConfigDir()
	if got != filepath.Join(want, "safe-agent", "policy.toml") {
		t.Errorf("DefaultPath = %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	path := filepath.Join(dir, "policy.toml")
	os.WriteFile(path, []byte("known_hosts = [\"kh\"]\n[defaults]\nconfirm = \"nope\"\n"), 0o600)
	_, err := Load(path)
	if want := path + ":3:11: confirm = \"nope\" is not one of \"never\", \"always\", \"forwarded\""; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	w := newWorld(t)
	os.WriteFile(filepath.Join(dir, "kh"), []byte(w.knownHosts), 0o600)
	os.WriteFile(path, []byte("known_hosts = [\"kh\"]\n"), 0o600)
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.HostNames(w.jump.pub); fmt.Sprint(got) != "[jump.example]" {
		t.Errorf("HostNames(jump) = %v", got)
	}
}

// TestLocatorPos: positions are right whatever order they are asked in
// (the scanner asks in file order and pos counts only new lines).
func TestLocatorPos(t *testing.T) {
	l := &locator{src: "a\nbb\n\nccc"}
	tests := []struct {
		off  int
		want position
	}{
		{0, position{1, 1}},
		{3, position{2, 2}},
		{5, position{3, 1}},
		{8, position{4, 3}},
		{2, position{2, 1}}, // back again
		{1, position{1, 2}},
		{99, position{4, 4}}, // past the end: the end
		{6, position{4, 1}},
	}
	for _, tc := range tests {
		if got := l.pos(tc.off); got != tc.want {
			t.Errorf("pos(%d) = %v, want %v", tc.off, got, tc.want)
		}
	}
}
