package agent

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// askerFor returns the Asker for the policy's prompt settings. A policy
// reload that changes the prompt program or its timeout gets a new Asker
// (and so forgets remembered answers, which were given for the old one).
func (s *Server) askerFor(pol *policy.Policy) *notify.Asker {
	kind := pol.Prompt()
	if kind == "" {
		kind = "auto"
	}
	timeout := pol.ConfirmTimeout()
	if timeout <= 0 {
		timeout = policy.DefaultConfirmTimeout
	}
	key := kind + "|" + timeout.String()
	s.askMu.Lock()
	defer s.askMu.Unlock()
	if s.asker != nil && s.askerKey == key {
		return s.asker
	}
	c := &envConfirmer{srv: s, kind: kind}
	var n notify.Notifier
	if s.opts.Notifier != nil {
		n = policyGatedNotifier{s}
	}
	s.asker = notify.NewAsker(c, notify.AskerOptions{Timeout: timeout, Notifier: n, Logger: s.log, Now: s.now})
	s.askerKey = key
	return s.asker
}

// envConfirmer builds the prompt program's confirmer at each prompt, with
// the agent's graphical session variables or, when the agent has none
// (started by systemd without `import-environment`), those of the client
// that asked. The client runs as the same user on this machine, so it
// could reach that display anyway; SSH_ASKPASS and PATH are never taken
// from it.
type envConfirmer struct {
	srv  *Server
	kind string
}

func (c *envConfirmer) Confirm(ctx context.Context, text string) (bool, error) {
	conf, err := c.build(text)
	if err != nil {
		return false, err
	}
	return conf.Confirm(ctx, text)
}

// Choose offers three choices when the prompt program can show them
// (zenity, kdialog, osascript); askpass programs and the tmux popup ask
// yes/no with q.Text, as Confirm does.
func (c *envConfirmer) Choose(ctx context.Context, q notify.Choices) (notify.Choice, error) {
	conf, err := c.build(q.Text)
	if err != nil {
		return notify.ChoiceDeny, err
	}
	return notify.Choose(ctx, conf, q)
}

// build returns the prompt program for one prompt; text is its yes/no
// text, by which the tmux popup finds the client's tmux.
func (c *envConfirmer) build(text string) (notify.Confirmer, error) {
	env := c.srv.opts.PromptEnv
	if !env.HasDisplay() {
		if ce := c.srv.clientEnv.Load(); ce != nil {
			env = env.WithDisplayFrom(*ce)
		}
	}
	conf, err := notify.NewConfirmer(c.kind, env, c.srv.log)
	if !env.HasDisplay() {
		// No desktop: ask in a tmux popup where the client runs, if it
		// runs in a terminal inside tmux.
		conf, err = notify.OrTmux(conf, err, c.srv.tmux.get(text), c.srv.tmuxOptions(env))
	}
	return conf, err
}

// tmuxOptions: the popup runs this very program's hidden tmux-prompt
// command.
func (s *Server) tmuxOptions(env notify.Env) notify.TmuxOptions {
	exe, err := os.Executable()
	if err != nil {
		exe = ""
	}
	return notify.TmuxOptions{Helper: []string{exe, "tmux-prompt"}, Env: env, Logger: s.log}
}

// tmuxTargets remembers, for each prompt waiting to be shown, the tmux of
// the client that asked. The Asker hands the Confirmer only the prompt's
// text, and that text names the requesting process chain with pids, so
// it tells clients apart.
type tmuxTargets struct {
	mu sync.Mutex
	m  map[string]*tmuxEntry
}

type tmuxEntry struct {
	t *notify.TmuxTarget
	n int // requests waiting with this text
}

func (tt *tmuxTargets) add(text string, t *notify.TmuxTarget) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.m == nil {
		tt.m = map[string]*tmuxEntry{}
	}
	e := tt.m[text]
	if e == nil {
		e = &tmuxEntry{}
		tt.m[text] = e
	}
	e.t, e.n = t, e.n+1
}

func (tt *tmuxTargets) done(text string) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if e := tt.m[text]; e != nil {
		if e.n--; e.n <= 0 {
			delete(tt.m, text)
		}
	}
}

func (tt *tmuxTargets) get(text string) *notify.TmuxTarget {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if e := tt.m[text]; e != nil {
		return e.t
	}
	return nil
}

// clientTmux finds the tmux of a client with no display, for a popup.
func (s *Server) clientTmux(pid int) *notify.TmuxTarget {
	t, err := notify.FindTmux(pid)
	if err != nil {
		s.log.Debug("no tmux popup for this client", "pid", pid, "err", err)
		return nil
	}
	return t
}

var pidInChain = regexp.MustCompile(` \(\d+\)`)

// programIdentity is the requesting program without process ids, so a
// remembered yes covers the next `git push` (a new ssh process) too: its
// executable path (from /proc/PID/exe, which the program cannot set) and
// the names in its chain. A copy of the same program elsewhere, or
// another program under the same name, is another program.
func programIdentity(p peerInfo) string {
	return p.Exe + " | " + pidInChain.ReplaceAllString(p.Chain, "")
}

// defaultProgramFor is how long "Allow <program> for N minutes" lasts when
// the policy remembers nothing (remember = "0s", the default).
const defaultProgramFor = 10 * time.Minute

// programFor is how long a prompt may offer to allow the requesting
// program (0: not offered, the prompt asks yes/no): the decision's
// remember when set, else defaultProgramFor. Not offered for a key added
// with ssh-add -c (its owner asked for every use to be asked), for a
// request through a forwarded agent (the program that asks runs on
// another machine; here there is only the ssh that forwards it), nor
// when the program's executable is unknown or its chain could not be
// read consistently (programs could not be told apart).
func programFor(p peerInfo, r *signRequest, remote bool) time.Duration {
	switch {
	case r.id.Settings.Confirm, remote, !sameProgramKnown(p):
		return 0
	case r.decision.Remember > 0:
		return r.decision.Remember
	}
	return defaultProgramFor
}

// sameProgramKnown says whether p's executable is known and was read
// consistently: the chain read for client rules (with its start-time
// re-check) names the same executable, so the pid did not change hands or
// exec another program between the two reads.
func sameProgramKnown(p peerInfo) bool {
	c := p.Client
	return p.Exe != "" && c != nil && c.Unreadable == "" && len(c.Chain) > 0 &&
		c.Chain[0].Exe == strings.TrimSuffix(p.Exe, " (deleted)")
}

// purposeText says what a signature is for, as prompts and notices show it.
func (s *Server) purposeText(r *signRequest) string {
	switch r.what.Purpose {
	case policy.PurposeLogin:
		if dest := s.requestPath(r).Destination(); dest != "" {
			return notify.PurposeLogin(r.what.User, dest)
		}
		return notify.PurposeLoginUnknownHost(r.what.User)
	case policy.PurposeSSHSIG:
		return notify.PurposeSSHSIG(r.what.Namespace)
	}
	return notify.PurposeOpaque()
}

// confirm asks the person at the desktop and waits for the answer. No
// answer, an error or no way to ask is a refusal.
func (s *Server) confirm(a *connAgent, r *signRequest) error {
	pol := s.policy()
	asker := s.askerFor(pol)
	if !s.opts.PromptEnv.HasDisplay() {
		if ce := readClientEnv(a.peer.PID); ce != nil {
			s.clientEnv.Store(ce)
		}
	}
	path := s.requestPathText(r)
	purpose := s.purposeText(r)
	program := programIdentity(a.peer)
	remote, remotePath := promptOrigin(a.peer, r.hops, r.bindFailed)
	q := notify.Question{
		KeyFingerprint: r.id.Fingerprint,
		Scope:          path + "\x00" + purpose + "\x00" + program,
		// Refusals count by path and program: a client that provokes
		// refusals cools down only its own use of the key.
		FatigueScope: path + "\x00" + program,
		Remote:       remote,
		RemotePath:   remotePath,
		Prompt: notify.Prompt{
			KeyComment: r.id.Comment, KeyFingerprint: r.id.Fingerprint,
			Purpose: purpose, Path: s.requestPath(r), Process: a.peer.Chain,
			Reason:      askReason(r.decision),
			Certificate: certText(r.cert()),
		},
		Remember:   r.decision.Remember,
		ProgramFor: programFor(a.peer, r, remote),
		Program:    a.peer.Exe,
	}
	var tmuxText string
	if !s.opts.PromptEnv.HasDisplay() && readClientEnv(a.peer.PID) == nil {
		if t := s.clientTmux(a.peer.PID); t != nil {
			p := q.Prompt
			p.Remember = q.Remember // as the Asker shows it
			tmuxText = p.Text()
			s.tmux.add(tmuxText, t)
		}
	}
	ctx, stop := a.conn.untilHangup()
	ans := asker.Ask(ctx, q)
	stop()
	if tmuxText != "" {
		s.tmux.done(tmuxText)
	}
	r.prompt = &audit.Prompt{Outcome: string(ans.Outcome), WaitMS: ans.Waited.Milliseconds(),
		RememberS: int64(ans.Remember / time.Second)}
	if ans.Yes {
		return nil
	}
	why := string(ans.Outcome)
	switch ans.Outcome {
	case notify.OutcomeNo:
		why = "the person said no"
	case notify.OutcomeTimeout:
		why = "nobody answered in time"
	case notify.OutcomeCancelled:
		why = "the client went away before an answer"
	case notify.OutcomeBusy:
		why = "not asked: " + notify.ErrPathBusy.Error()
	}
	if ans.Err != nil && ans.Outcome != notify.OutcomeNo && ans.Outcome != notify.OutcomeBusy {
		why += ": " + ans.Err.Error()
	}
	return &refusal{r.decision.Rule, r.decision.Unconfirmed(why)}
}

// promptOrigin says whether a prompt comes from a forwarded connection (or
// one whose session-bind failed), and which forwarded path it counts
// against for "one waiting prompt per path": the hops the user's own ssh
// vouches for (forwardOrigin), since the far end can make up the rest;
// for a failed bind with no forwarding hop, the client process.
func promptOrigin(p peerInfo, hops []sshwire.Hop, bindFailed bool) (remote bool, path string) {
	if o := forwardOrigin(hops); o != "" {
		return true, "forwarded " + o
	}
	if bindFailed {
		return true, "failed session-bind, pid " + strconv.Itoa(p.PID)
	}
	return false, ""
}

// forget clears every remembered confirmation; it returns how many.
func (s *Server) forget() int {
	s.askMu.Lock()
	a := s.asker
	s.askMu.Unlock()
	if a == nil {
		return 0
	}
	return a.Forget()
}

// forgetKey clears remembered confirmations of one key.
func (s *Server) forgetKey(fingerprint string) {
	s.askMu.Lock()
	a := s.asker
	s.askMu.Unlock()
	if a != nil {
		a.ForgetKey(fingerprint)
	}
}

// notifyOutcome tells the person, off the request path, about uses and
// refusals as the policy's notify setting asks.
func (s *Server) notifyOutcome(a *connAgent, r *signRequest, err error) {
	if s.opts.Notifier == nil || r.id == nil {
		return
	}
	fwd := forwarded(r.hops) || r.bindFailed
	if !notify.ShouldNotify(string(s.policy().NotifyMode()), err != nil, fwd) {
		return
	}
	p := notify.Prompt{KeyComment: r.id.Comment, KeyFingerprint: r.id.Fingerprint, Purpose: s.purposeText(r),
		Path: s.requestPath(r), Process: a.peer.Chain, Certificate: certText(r.cert())}
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	title, body := notify.Notice(p, err == nil, reason)
	s.opts.Notifier.Notify(title, body)
}

// untilHangup returns a context that ends when the client hangs up (or
// the agent stops), for waits such as prompts; call stop when done.
func (sc *serverConn) untilHangup() (context.Context, func()) {
	ctx, cancel := context.WithCancel(sc.ctx)
	if sc.in != nil && sc.in.buffered() > 0 {
		// The client's next request is already read: it has not hung up
		// (watchHangup stops watching at data, too).
		return ctx, cancel
	}
	done := make(chan struct{})
	watching := watchHangup(sc.c, done, cancel)
	return ctx, func() {
		close(done)
		// Wake the watcher's pending poll and wait for it.
		_ = sc.c.SetReadDeadline(time.Now())
		<-watching
		sc.busy() // the request is still being served
		cancel()
	}
}

// policyGatedNotifier passes the Asker's notices (prompt fatigue) on
// unless the policy says notify = "never".
type policyGatedNotifier struct{ s *Server }

func (g policyGatedNotifier) Notify(title, body string) {
	if g.s.policy().NotifyMode() != policy.NotifyNever {
		g.s.opts.Notifier.Notify(title, body)
	}
}
