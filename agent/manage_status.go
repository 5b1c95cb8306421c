package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/safe-agent/safe-agent/notify"
)

// PromptStatus is the part of Status that says how the agent would ask
// for a confirmation now, and whether it runs on the built-in policy. It
// is computed by the agent, in its own environment: the caller's
// environment may well differ (an agent started by systemd has no
// DISPLAY; one started with a broken SSH_ASKPASS refuses every prompt
// while the caller's shell could show one).
type PromptStatus struct {
	// PolicyDefaults: no policy file exists, the built-in defaults apply.
	PolicyDefaults bool `json:"policy_defaults,omitempty"`
	// PromptSetting is the policy's prompt setting ("auto" when unset).
	PromptSetting string `json:"prompt_setting,omitempty"`
	// Prompt is the program that would ask, as notify describes it
	// ("askpass /usr/lib/openssh/gnome-ssh-askpass", "zenity /usr/bin/zenity").
	Prompt string `json:"prompt,omitempty"`
	// PromptError says why no prompt can be shown; every request that
	// needs a confirmation is then refused.
	PromptError string `json:"prompt_error,omitempty"`
}

// statusFor is the status as a local client asks for it: with the prompt
// resolved as it would be for a confirmation that client asked for.
func (a *connAgent) statusFor() Status {
	st := a.srv.Status()
	st.PromptStatus = a.srv.promptStatus(a.peer.PID)
	st.Upstreams = a.srv.upstreamStatus()
	return st
}

// promptStatus resolves the prompt program exactly as envConfirmer does
// at a prompt: the agent's environment, with the display of the client
// (pid) when the agent has none, else a tmux popup when that client runs
// inside tmux. The confirmer is then asked with a
// context already cancelled: a program that can be run reports the
// cancellation without being started; one that cannot says why.
func (s *Server) promptStatus(pid int) PromptStatus {
	pol := s.policy()
	ps := PromptStatus{PolicyDefaults: pol.Name() == "built-in defaults", PromptSetting: pol.Prompt()}
	if ps.PromptSetting == "" {
		ps.PromptSetting = notify.KindAuto
	}
	env := s.opts.PromptEnv
	if !env.HasDisplay() {
		if ce := readClientEnv(pid); ce != nil {
			env = env.WithDisplayFrom(*ce)
		} else if ce := s.clientEnv.Load(); ce != nil {
			env = env.WithDisplayFrom(*ce)
		}
	}
	c, err := notify.NewConfirmer(pol.Prompt(), env, nil)
	if !env.HasDisplay() {
		// As at a prompt: a client in a terminal inside tmux is asked in
		// a tmux popup.
		c, err = notify.OrTmux(c, err, s.clientTmux(pid), s.tmuxOptions(env))
	}
	if err != nil {
		ps.PromptError = err.Error()
		return ps
	}
	if str, ok := c.(fmt.Stringer); ok {
		ps.Prompt = str.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Confirm(ctx, "safe-agent status"); err != nil && !errors.Is(err, notify.ErrCancelled) {
		ps.PromptError = err.Error()
	}
	return ps
}
