package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// daemon is a configured agent and what it owns.
type daemon struct {
	server *agent.Server
	policy *agent.PolicyHolder
	audit  *audit.Log
	log    *slog.Logger
	cancel context.CancelFunc
}

// policyPath resolves --policy, then SAFE_AGENT_POLICY, then the default.
// explicit reports whether the user named the file (then it must exist).
func policyPath(flag string) (path string, explicit bool, err error) {
	if flag != "" {
		return flag, true, nil
	}
	if env := os.Getenv("SAFE_AGENT_POLICY"); env != "" {
		return env, true, nil
	}
	p, err := policy.DefaultPath()
	return p, false, err
}

func setupDaemon(ctx context.Context, cfg serveConfig, logger *slog.Logger) (*daemon, error) {
	d := &daemon{log: logger}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	auditPath := cfg.auditPath
	if auditPath == "" {
		p, err := audit.DefaultPath()
		if err != nil {
			return nil, fmt.Errorf("audit log location: %w (set --audit-log)", err)
		}
		auditPath = p
	}
	al, err := audit.Open(auditPath, audit.Options{Logger: logger})
	if err != nil && cfg.auditFallback && errors.Is(err, audit.ErrInUse) {
		// Several `ssh-agent`-style agents may run at once; each keeps
		// its own chain next to the default log.
		alt := strings.TrimSuffix(auditPath, ".jsonl") + fmt.Sprintf("-agent-%d.jsonl", os.Getpid())
		logger.Warn("audit log in use by another agent; this agent writes its own", "path", alt)
		auditPath = alt
		al, err = audit.Open(auditPath, audit.Options{Logger: logger})
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w (fix its permissions or choose another --audit-log)", err)
	}
	d.audit = al

	pp, explicit, err := policyPath(cfg.policyPath)
	if err != nil {
		return nil, fmt.Errorf("policy location: %w (set --policy)", err)
	}
	ph, err := agent.NewPolicyHolder(pp, explicit, logger, al)
	if err != nil {
		return nil, fmt.Errorf("policy: %w\nfix the file (check it with `safe-agent policy check %s`) and start again", err, pp)
	}
	d.policy = ph
	for _, w := range ph.Get().Warnings() {
		logger.Warn("policy", "warning", w)
	}

	d.server = agent.New(agent.Options{
		Logger:          logger,
		Debug:           cfg.debug,
		DefaultLifetime: cfg.lifetime,
		AllowRoot:       cfg.allowRoot,
		Policy:          ph,
		Audit:           al,
	})
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go ph.Watch(wctx, time.Second)
	al.Append(audit.Record{Event: "start", Detail: fmt.Sprintf("pid %d, socket %s, policy %s", os.Getpid(), cfg.socket, pp)})
	ok = true
	return d, nil
}

func (d *daemon) reload(why string) {
	if d.policy != nil {
		_ = d.policy.Reload(why)
	}
}

func (d *daemon) close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.audit != nil {
		_ = d.audit.Append(audit.Record{Event: "stop", Detail: fmt.Sprintf("pid %d", os.Getpid())})
		if err := d.audit.Close(); err != nil {
			d.log.Error("close audit log", "err", err)
		}
	}
}
