package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/internal/termtext"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// checkStatus is the outcome of one doctor check.
type checkStatus int

const (
	checkOK checkStatus = iota
	checkSkip
	checkWarn
	checkFail
)

func (s checkStatus) String() string {
	return [...]string{"ok", "--", "warn", "FAIL"}[s]
}

// checkResult is one line of `safe-agent doctor`: what was found and, for
// a problem, how to fix it.
type checkResult struct {
	Name   string
	Status checkStatus
	Msg    string
	Fix    string
	Notes  []string // further findings that do not change the status
}

// doctorEnv is what the checks read from the system, so that tests can
// give their own.
type doctorEnv struct {
	getenv   func(string) string
	environ  []string
	lookPath func(string) (string, error)
	// sshVersion runs `ssh -V` with the ssh at path and returns its output.
	sshVersion func(path string) (string, error)
	// keyringTimeout bounds the Secret Service check (a locked keyring
	// may wait for an unlock prompt).
	keyringTimeout time.Duration
}

func defaultDoctorEnv() doctorEnv {
	return doctorEnv{
		getenv:   os.Getenv,
		environ:  os.Environ(),
		lookPath: exec.LookPath,
		sshVersion: func(path string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, path, "-V").CombinedOutput()
			return string(out), err
		},
		keyringTimeout: 5 * time.Second,
	}
}

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the set-up and say how to fix what is wrong",
		Long: `Check everything safe-agent depends on, print each check as ok, warn or
FAIL, and for each problem the fix:

  agent        SSH_AUTH_SOCK points at a running safe-agent
  OpenSSH      the ssh client is 8.9 or newer (older ones do not send
               session-bind, so destination rules cannot work)
  known_hosts  every host the policy names can be found in known_hosts
               (hashed known_hosts lines only match exact names)
  keyring      a Secret Service (or the macOS keychain) is reachable and unlocked
  prompt       a confirmation prompt can be shown (asked of the running
               agent, which resolves it in its own environment)
  memory       keys can be held in locked memory (RLIMIT_MEMLOCK)
  audit log    the audit log can be written
  policy       the policy file is valid, and the agent's last reload worked
  upstream     each upstream agent (serve --upstream, upstream in the
               policy file) answers, and how many keys it offers

When an agent answers, its policy file and audit log are checked; otherwise
the defaults ($SAFE_AGENT_POLICY, $XDG_CONFIG_HOME/safe-agent/policy.toml,
$XDG_STATE_HOME/safe-agent/audit.jsonl). Exits 0 when nothing FAILs
(warnings included), 1 otherwise.`,
		Example: `  safe-agent doctor
  SSH_AUTH_SOCK=/run/user/1000/safe-agent/agent.sock safe-agent doctor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDoctor(cmd.Context(), defaultDoctorEnv(), cmd.OutOrStdout())
		},
	}
}

func runDoctor(ctx context.Context, env doctorEnv, out io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	agentRes, st := checkAgent(env)

	policyPathName, explicit := "", false
	if st != nil && st.Policy != "" {
		// A running agent started with it: had the file been named and
		// missing, it would have refused to start.
		policyPathName = st.Policy
	} else if p, e, err := policyPath(""); err == nil {
		policyPathName, explicit = p, e
	}
	pol, policyRes := checkPolicyFile(policyPathName, explicit, st)

	auditPath := ""
	if st != nil && st.AuditLog != "" {
		auditPath = st.AuditLog
	} else if p, err := auditLogPath(""); err == nil {
		auditPath = p
	}

	results := []checkResult{
		agentRes,
		checkOpenSSH(env),
		checkUnboundClients(st),
		checkKnownHosts(pol, policyPathName, st),
		checkKeyring(ctx, env, st),
		checkPrompt(env, pol, st),
		checkMemory(st),
		checkAuditLog(auditPath),
		policyRes,
	}
	results = append(results, checkUpstreams(st)...)
	fails, warns := 0, 0
	for _, r := range results {
		printCheck(out, r)
		switch r.Status {
		case checkFail:
			fails++
		case checkWarn:
			warns++
		}
	}
	fmt.Fprintln(out)
	if fails > 0 {
		plural := "s"
		if fails == 1 {
			plural = ""
		}
		return exitCodeError{code: 1, msg: fmt.Sprintf("%d problem%s found: see the fix lines above", fails, plural)}
	}
	if warns > 0 {
		fmt.Fprintf(out, "No problems that stop safe-agent; %d warning(s) above.\n", warns)
	} else {
		fmt.Fprintln(out, "All checks passed.")
	}
	return nil
}

// printCheck prints one check. Messages may quote what the agent reports
// (its notes name client processes) and files written by others
// (known_hosts names, policy errors), so each line is escaped for the
// terminal; the line breaks doctor itself puts in a message are kept, and
// a note is always one line.
func printCheck(w io.Writer, r checkResult) {
	const indent = "                   "
	lines := strings.Split(strings.TrimRight(r.Msg, "\n"), "\n")
	fmt.Fprintf(w, "%-4s  %-11s  %s\n", r.Status, r.Name, termtext.Escape(lines[0]))
	for _, l := range lines[1:] {
		fmt.Fprintf(w, "%s%s\n", indent, termtext.Escape(l))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "%snote: %s\n", indent, termtext.Escape(n))
	}
	if r.Fix != "" && r.Status >= checkWarn {
		fix := strings.Split(r.Fix, "\n")
		fmt.Fprintf(w, "%sfix: %s\n", indent, termtext.Escape(fix[0]))
		for _, l := range fix[1:] {
			fmt.Fprintf(w, "%s     %s\n", indent, termtext.Escape(l))
		}
	}
}

// checkAgent: SSH_AUTH_SOCK points at a safe-agent that answers. It also
// returns the agent's status (nil when no safe-agent answers there) for
// the other checks.
func checkAgent(env doctorEnv) (checkResult, *agent.Status) {
	r := checkResult{Name: "agent"}
	sock := env.getenv("SSH_AUTH_SOCK")
	def := defaultSocket()
	envFix := "point this shell at safe-agent: eval \"$(safe-agent env)\"\nand add that line to your shell's start-up file (~/.bashrc, ~/.zshrc; `safe-agent env --help` for fish and csh)"
	if sock == "" {
		r.Status, r.Msg, r.Fix = checkFail, "SSH_AUTH_SOCK is not set: ssh, ssh-add and git cannot reach any agent", envFix
		if st, err := agentStatus(def); err == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("safe-agent (pid %d) is running on %s", st.PID, def))
			return r, &st
		}
		r.Fix = "start safe-agent: `safe-agent service install` (at every login) or `safe-agent serve`; then " + envFix
		return r, nil
	}
	st, err := agentStatus(sock)
	switch {
	case errors.Is(err, errNotSafeAgent):
		r.Status = checkFail
		r.Msg = fmt.Sprintf("SSH_AUTH_SOCK=%s is another agent (OpenSSH's ssh-agent, or a desktop keyring's), not safe-agent: no policy, no audit log", sock)
		r.Fix = envFix + "\nif your desktop sets SSH_AUTH_SOCK itself (GNOME Keyring, gcr-ssh-agent), put the line at the end of the file so that it wins"
		if st, err := agentStatus(def); err == nil && def != sock {
			r.Notes = append(r.Notes, fmt.Sprintf("safe-agent (pid %d) is running on %s", st.PID, def))
			return r, &st
		}
		return r, nil
	case err != nil:
		r.Status = checkFail
		r.Msg = fmt.Sprintf("SSH_AUTH_SOCK=%s, but no agent answers there", sock)
		r.Fix = "start safe-agent: `safe-agent service install` (at every login) or `safe-agent serve`\nif it runs on another socket: eval \"$(safe-agent env --socket PATH)\""
		return r, nil
	}
	r.Msg = fmt.Sprintf("safe-agent (pid %d) answers on %s", st.PID, sock)
	if st.Locked {
		r.Status = checkWarn
		r.Msg += ", but it is locked: no key can be used"
		r.Fix = "unlock it with ssh-add -X"
	}
	r.Notes = append(r.Notes, st.Notes...)
	return r, &st
}

var sshVersionRE = regexp.MustCompile(`OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)`)

// parseOpenSSHVersion reads major.minor from `ssh -V` output.
func parseOpenSSHVersion(s string) (major, minor int, ok bool) {
	m := sshVersionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	major, _ = strconv.Atoi(m[1])
	minor, _ = strconv.Atoi(m[2])
	return major, minor, true
}

// checkOpenSSH: the ssh client sends session-bind (OpenSSH 8.9+).
func checkOpenSSH(env doctorEnv) checkResult {
	r := checkResult{Name: "OpenSSH"}
	path, err := env.lookPath("ssh")
	if err != nil {
		r.Status, r.Msg, r.Fix = checkFail, "the OpenSSH client (ssh) is not on PATH", "install it (Debian/Ubuntu: apt install openssh-client)"
		return r
	}
	out, _ := env.sshVersion(path)
	version := firstLine(out)
	major, minor, ok := parseOpenSSHVersion(out)
	if !ok {
		r.Status = checkWarn
		r.Msg = fmt.Sprintf("cannot tell the version of %s (`ssh -V` said %q): destination rules need OpenSSH 8.9 or newer", path, version)
		r.Fix = "make sure `ssh` is OpenSSH 8.9 or newer"
		return r
	}
	if major < 8 || major == 8 && minor < 9 {
		r.Status = checkFail
		r.Msg = fmt.Sprintf("%s (%s) is older than OpenSSH 8.9: it does not send session-bind, so the agent cannot tell where a signature goes; keys with allow lists are refused, and forwarded use counts as an unknown destination", path, version)
		r.Fix = "install OpenSSH 8.9 or newer (Debian 12, Ubuntu 22.04, Fedora 36, macOS 13 and later have it); the hosts you forward the agent to need it too"
		return r
	}
	r.Msg = fmt.Sprintf("%s (%s) sends session-bind", path, version)
	return r
}

// policyFileNames are the allow and deny entries of a policy file; the
// policy package checks the file, this only collects host names.
type policyFileNames struct {
	Defaults struct {
		Allow []string `toml:"allow"`
		Deny  []string `toml:"deny"`
	} `toml:"defaults"`
	Key []struct {
		Allow []string `toml:"allow"`
		Deny  []string `toml:"deny"`
	} `toml:"key"`
}

// policyHostNames lists the host elements the policy file and the loaded
// keys' own settings name, in order, without duplicates or fingerprints.
func policyHostNames(path string, st *agent.Status) []string {
	var entries []string
	if b, err := os.ReadFile(path); err == nil {
		var pf policyFileNames
		if _, err := toml.Decode(string(b), &pf); err == nil {
			entries = append(entries, pf.Defaults.Allow...)
			entries = append(entries, pf.Defaults.Deny...)
			for _, k := range pf.Key {
				entries = append(entries, k.Allow...)
				entries = append(entries, k.Deny...)
			}
		}
	}
	if st != nil {
		for _, k := range st.Keys {
			entries = append(entries, k.Allow...)
			entries = append(entries, k.Deny...)
		}
	}
	var names []string
	for _, e := range entries {
		for _, part := range strings.Split(e, ">") {
			part = strings.ToLower(strings.TrimSpace(part))
			if part == "" || strings.HasPrefix(strings.ToUpper(part), "SHA256:") || slices.Contains(names, part) {
				continue
			}
			names = append(names, part)
		}
	}
	return names
}

func isGlob(s string) bool { return strings.ContainsAny(s, "*?") }

// globMatch matches '*' (any run) and '?' (one character), as policy
// patterns and OpenSSH host patterns do.
func globMatch(pat, s string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			for i := len(s); i >= 0; i-- {
				if globMatch(pat[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			pat, s = pat[1:], s[1:]
		default:
			if s == "" || pat[0] != s[0] {
				return false
			}
			pat, s = pat[1:], s[1:]
		}
	}
	return s == ""
}

// knownHostsCensus is what the known_hosts files hold.
type knownHostsCensus struct {
	entries, hashed int
	plain           []string // plain host names (no patterns, no negations)
}

func readKnownHostsCensus(files []string) knownHostsCensus {
	var c knownHostsCensus
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 || line[0] == '#' {
				continue
			}
			_, hosts, _, _, _, err := ssh.ParseKnownHosts(line)
			if err != nil {
				continue
			}
			c.entries++
			hashed := false
			for _, h := range hosts {
				switch {
				case strings.HasPrefix(h, "|1|"):
					hashed = true
				case strings.HasPrefix(h, "!"), isGlob(h):
				default:
					h = strings.ToLower(h)
					if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]:22") {
						h = h[1 : len(h)-4]
					}
					c.plain = append(c.plain, h)
				}
			}
			if hashed {
				c.hashed++
			}
		}
	}
	return c
}

// checkKnownHosts: every host the policy names can be found in known_hosts.
func checkKnownHosts(p *policy.Policy, policyPath string, st *agent.Status) checkResult {
	r := checkResult{Name: "known_hosts"}
	if p == nil {
		r.Status, r.Msg = checkSkip, "not checked: the policy file is invalid (see policy below)"
		return r
	}
	files := p.KnownHostsFiles()
	c := readKnownHostsCensus(files)
	names := policyHostNames(policyPath, st)
	where := fmt.Sprintf("%s: %d entries, %d hashed", strings.Join(files, ", "), c.entries, c.hashed)
	if len(names) == 0 {
		r.Msg = where + "; the policy names no hosts"
		return r
	}
	var unknown, globsHashed, globsNone []string
	for _, n := range names {
		if isGlob(n) {
			if !slices.ContainsFunc(c.plain, func(h string) bool { return globMatch(n, h) }) {
				if c.hashed > 0 {
					globsHashed = append(globsHashed, n)
				} else {
					globsNone = append(globsNone, n)
				}
			}
			continue
		}
		if strings.HasSuffix(n, ".invalid") {
			continue // reserved (RFC 2606): named on purpose, as "no host at all"
		}
		if len(p.ResolveHost(n)) == 0 {
			unknown = append(unknown, n)
		}
	}
	var msgs, fixes []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("not in known_hosts, so rules naming them never match: %s", strings.Join(unknown, ", ")))
		fixes = append(fixes, "connect to each host once with ssh (check the fingerprint it shows), or add it with `ssh-keyscan HOST >> ~/.ssh/known_hosts` and check the key; or fix the name in the policy")
	}
	if len(globsHashed) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d known_hosts entries are hashed (HashKnownHosts yes) and globs never match hashed entries; these match no plain entry: %s", c.hashed, strings.Join(globsHashed, ", ")))
		fixes = append(fixes, "name those hosts exactly in the policy (exact names are checked against hashed entries) or by SHA256: fingerprint;\nor set `HashKnownHosts no` in ~/.ssh/config and add the hosts again in plain")
	}
	if len(msgs) > 0 {
		r.Status = checkFail
		r.Msg = strings.Join(msgs, "\n")
		r.Fix = strings.Join(fixes, "\n")
		r.Notes = append(r.Notes, where)
		return r
	}
	if len(globsNone) > 0 {
		r.Status = checkWarn
		r.Msg = fmt.Sprintf("%s; these globs match no host yet: %s", where, strings.Join(globsNone, ", "))
		r.Fix = "nothing to do if you have not connected to such a host yet; otherwise check the pattern"
		return r
	}
	r.Msg = fmt.Sprintf("%s; all %d host names in the policy are known", where, len(names))
	return r
}

// checkKeyring: a Secret Service (or keychain) is reachable and unlocked.
func checkKeyring(ctx context.Context, env doctorEnv, st *agent.Status) checkResult {
	r := checkResult{Name: "keyring"}
	fail := checkFail
	if st != nil && st.Keystore == keystore.NameNone {
		// The agent does without; only `safe-agent add` (storing) needs it.
		fail = checkWarn
		r.Notes = append(r.Notes, "the agent runs with --keystore none: keys are not stored; add them with `safe-agent add --no-store` or ssh-add")
	}
	kr := keystore.NewKeyring("safe-agent", env.keyringTimeout, nil)
	lctx, cancel := context.WithTimeout(ctx, env.keyringTimeout+time.Second)
	defer cancel()
	keys, problems, err := kr.Load(lctx)
	for i := range keys {
		clear(keys[i].PrivateKeyPEM)
	}
	if err != nil {
		r.Status = fail
		r.Msg = err.Error()
		if errors.Is(err, keystore.ErrUnavailable) {
			r.Fix = "start and unlock a Secret Service in this session (GNOME Keyring, KWallet, KeePassXC with Secret Service on), or run the agent with --keystore none and add keys with --no-store"
		} else {
			r.Fix = "see the message; `safe-agent list` shows what is stored"
		}
		return r
	}
	r.Msg = fmt.Sprintf("reachable and unlocked; %d stored key(s)", len(keys))
	for _, p := range problems {
		r.Status = max(r.Status, checkWarn)
		r.Notes = append(r.Notes, p.Error())
	}
	if r.Status == checkWarn {
		r.Fix = "see the notes"
	}
	return r
}

// checkPrompt: a confirmation prompt can be shown. A running agent says
// how it would ask (it resolves the program in its own environment, which
// may differ from this shell's: a broken SSH_ASKPASS, no DISPLAY); without
// one, the prompt is resolved here. Confirm is called with a context that
// is already cancelled: a working prompt reports the cancellation without
// starting anything; one that cannot be shown says why.
func checkPrompt(env doctorEnv, p *policy.Policy, st *agent.Status) checkResult {
	fix := "run from your desktop session (DISPLAY or WAYLAND_DISPLAY set), install ssh-askpass-gnome or zenity, or set prompt = \"/path/to/askpass\" in the policy;\nfor an agent started by systemd: systemctl --user import-environment DISPLAY WAYLAND_DISPLAY XAUTHORITY"
	r := checkResult{Name: "prompt"}
	if p == nil {
		r.Status, r.Msg = checkSkip, "not checked: the policy file, which chooses the prompt, is invalid (see policy below)"
		return r
	}
	if st != nil && st.PromptSetting != "" {
		return agentPromptCheck(st, fix)
	}
	kind := p.Prompt()
	shown := kind
	if shown == "" {
		shown = notify.KindAuto
	}
	c, err := notify.NewConfirmer(kind, notify.EnvFromList(env.environ), nil)
	if err != nil {
		r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("prompt = %q: %v", shown, err), fix
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, perr := c.Confirm(ctx, "safe-agent doctor")
	if perr != nil && !errors.Is(perr, notify.ErrCancelled) {
		r.Status = checkFail
		r.Msg = fmt.Sprintf("prompt = %q: %v: every use that needs a confirmation is refused", shown, perr)
		r.Fix = fix
		return r
	}
	desc := shown
	if s, ok := c.(fmt.Stringer); ok {
		desc = s.String()
	}
	r.Msg = fmt.Sprintf("confirmations are asked with %s", desc)
	return r
}

// agentPromptCheck is checkPrompt from what the running agent reports.
func agentPromptCheck(st *agent.Status, fix string) checkResult {
	r := checkResult{Name: "prompt"}
	r.Notes = append(r.Notes, fmt.Sprintf("checked by the running agent (pid %d), in its own environment", st.PID))
	if st.PromptError != "" {
		r.Status = checkFail
		r.Msg = fmt.Sprintf("prompt = %q: %s: every use that needs a confirmation is refused", st.PromptSetting, st.PromptError)
		r.Fix = fix + "\nthe agent keeps the environment it was started with (SSH_ASKPASS, PATH, DISPLAY): correct it there and restart the agent\n(systemd: systemctl --user set-environment or unset-environment SSH_ASKPASS, then systemctl --user restart safe-agent)"
		return r
	}
	r.Msg = fmt.Sprintf("confirmations are asked with %s", orDash(st.Prompt))
	return r
}

// checkMemory: keys can be held in locked memory.
func checkMemory(st *agent.Status) checkResult {
	r := checkResult{Name: "memory"}
	v, err := keystore.NewVault(nil, keystore.VaultOptions{})
	if err != nil {
		r.Status, r.Msg = checkFail, err.Error()
		r.Fix = "raise the locked-memory limit: `ulimit -l 8192` (or memlock in /etc/security/limits.conf), LimitMEMLOCK=8M in safe-agent.service"
		return r
	}
	v.Close()
	if st != nil && !st.MemoryLocked {
		r.Status = checkFail
		r.Msg = "the running agent holds keys in memory that is NOT locked (started with --allow-unlocked-memory): they may be written to swap"
		r.Fix = "raise its memlock limit (LimitMEMLOCK= in safe-agent.service, ulimit -l) and restart it without --allow-unlocked-memory"
		return r
	}
	r.Msg = "keys can be held in locked memory"
	return r
}

// checkAuditLog: the audit log can be opened for appending. Nothing is
// written: the log is a hash chain with one writer.
func checkAuditLog(path string) checkResult {
	r := checkResult{Name: "audit log"}
	fix := "make it writable (check its permissions and that the file system is writable and not full), or give the agent another --audit-log; the agent refuses every signature it cannot record"
	if path == "" {
		r.Status, r.Msg, r.Fix = checkFail, "no audit log location: neither XDG_STATE_HOME nor HOME is set", "set HOME, or run the agent with --audit-log FILE"
		return r
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
		r.Msg = path + " is writable"
		return r
	}
	if !errors.Is(err, fs.ErrNotExist) {
		r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("cannot write %s: %v", path, err), fix
		return r
	}
	// Not there yet: the agent creates it (and missing directories).
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("cannot create %s: %s is not a directory", path, dir), fix
				return r
			}
			probe, err := os.CreateTemp(dir, ".safe-agent-doctor-*")
			if err != nil {
				r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("cannot create %s: %v", path, err), fix
				return r
			}
			probe.Close()
			os.Remove(probe.Name())
			r.Msg = path + " does not exist yet; the agent can create it"
			return r
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("cannot create %s: %v", path, err), fix
			return r
		}
		dir = parent
	}
}

// checkPolicyFile: the policy file is valid, and the agent's last reload
// of it did not fail. It returns the loaded policy for the other checks.
func checkPolicyFile(path string, explicit bool, st *agent.Status) (*policy.Policy, checkResult) {
	r := checkResult{Name: "policy"}
	if path == "" {
		p, _ := policy.LoadDefaults()
		r.Status, r.Msg = checkWarn, "no policy location (HOME and XDG_CONFIG_HOME are unset): built-in defaults"
		r.Fix = "set HOME, or name a file with SAFE_AGENT_POLICY"
		return p, r
	}
	p, err := agent.LoadPolicyFile(path, explicit)
	var fe policy.FileErrors
	switch {
	case errors.As(err, &fe):
		r.Status = checkFail
		r.Msg = fmt.Sprintf("%s is not valid:\n%s", path, fe.Error())
		r.Fix = fmt.Sprintf("correct those lines (check with `safe-agent policy check %s`); the agent reloads the file when it is saved", path)
		return nil, r
	case errors.Is(err, fs.ErrNotExist):
		r.Status, r.Msg = checkFail, fmt.Sprintf("%s does not exist, but it was named (--policy or SAFE_AGENT_POLICY)", path)
		r.Fix = "create it, or stop naming it to use the default location"
		return nil, r
	case err != nil:
		r.Status, r.Msg, r.Fix = checkFail, fmt.Sprintf("%s: %v", path, err), "fix the file or its permissions"
		return nil, r
	}
	if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
		r.Msg = fmt.Sprintf("no file at %s: the built-in defaults apply (confirm forwarded use, at most 1 forwarding hop)", path)
	} else {
		r.Msg = path + " is valid"
	}
	if st != nil && st.PolicyError != "" {
		r.Status = checkFail
		r.Msg += fmt.Sprintf("\nbut the agent's last reload failed and it still runs the previous policy:\n%s", st.PolicyError)
		r.Fix = "save the file again (or `systemctl --user reload safe-agent`, or send the agent SIGHUP) so that it reloads"
	}
	for _, w := range p.Warnings() {
		if r.Status == checkOK {
			r.Status = checkWarn
			r.Fix = "see the notes"
		}
		r.Notes = append(r.Notes, w)
	}
	return p, r
}
