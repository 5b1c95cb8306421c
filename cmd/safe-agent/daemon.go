package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safe-agent/safe-agent/agent"
	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/internal/hint"
	"github.com/safe-agent/safe-agent/keystore"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// daemon is a configured agent and what it owns.
type daemon struct {
	server   *agent.Server
	policy   *agent.PolicyHolder
	audit    *audit.Log
	vault    *keystore.Vault
	notifier *notify.DesktopNotifier
	store    keystore.Store
	log      *slog.Logger
	cancel   context.CancelFunc
	loaded   chan struct{}   // closed once stored keys were loaded (or there are none to load)
	ctx      context.Context // ends when the daemon closes
	loadMu   sync.Mutex      // one load of stored keys into the agent at a time
	reloads  sync.WaitGroup  // SIGHUP reloads of stored keys in progress

	mu    sync.Mutex
	notes []string
}

// setupDaemon builds the agent cfg asks for, keeping keys at rest in store.
func setupDaemon(ctx context.Context, cfg serveConfig, store keystore.Store, logger *slog.Logger) (*daemon, error) {
	d := &daemon{log: logger, store: store}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	auditPath, err := auditLogPath(cfg.auditPath)
	if err != nil {
		return nil, err
	}
	// The notifier sends whatever the agent passes it; the policy's
	// notify setting (reloadable) filters in the agent.
	n, err := notify.NewNotifier(notify.NotifyAlways, logger)
	if err != nil {
		return nil, err
	}
	d.notifier = n
	auditOpts := audit.Options{Logger: logger, OnRetentionOverride: d.auditSpaceLow}
	al, err := audit.Open(auditPath, auditOpts)
	if err != nil && cfg.auditFallback && errors.Is(err, audit.ErrInUse) {
		// Several `ssh-agent`-style agents may run at once; each keeps
		// its own chain next to the default log.
		alt := strings.TrimSuffix(auditPath, ".jsonl") + fmt.Sprintf("-agent-%d.jsonl", os.Getpid())
		logger.Warn("audit log in use by another agent; this agent writes its own", "path", alt)
		auditPath = alt
		al, err = audit.Open(auditPath, auditOpts)
	}
	if err != nil {
		fix := "fix its permissions or choose another --audit-log"
		if errors.Is(err, audit.ErrInUse) {
			fix = "stop the agent that writes it, or choose another --audit-log"
		}
		return nil, hint.Wrap(fmt.Errorf("open audit log: %w", err), fix)
	}
	d.audit = al
	// Records are copied to the journal or syslog as the policy's
	// audit_mirror says; those written before the policy is loaded (the
	// first policy-load) wait for it.
	var held atomic.Pointer[agent.PolicyHolder]
	al.SetMirror(audit.MirrorOptions{Logger: logger, Mode: func() (string, bool) {
		if h := held.Load(); h != nil {
			return h.Get().AuditMirror(), true
		}
		return "", false
	}})

	pp, explicit, err := policyPath(cfg.policyPath)
	if err != nil {
		return nil, err
	}
	ph, err := agent.NewPolicyHolder(pp, explicit, logger, al)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("policy: %w", err),
			fmt.Sprintf("fix the file (check it with `safe-agent policy check %s`) and start again", shellQuote(pp)))
	}
	d.policy = ph
	held.Store(ph)
	for _, w := range ph.Get().Warnings() {
		logger.Warn("policy", "warning", w)
	}

	// Private keys live in locked, non-dumpable memory between signatures.
	v, err := keystore.NewVault(logger, keystore.VaultOptions{AllowUnlocked: cfg.allowUnlocked})
	if errors.Is(err, keystore.ErrMemoryLock) {
		return nil, hint.Wrap(err, "or, not recommended, run with --allow-unlocked-memory: keys then stay in memory that may be swapped to disk")
	}
	if err != nil {
		return nil, err
	}
	d.vault = v
	if !v.Locked() {
		logger.Warn("private keys are NOT in locked memory (--allow-unlocked-memory): they may be swapped to disk; raise the memlock limit (ulimit -l, or LimitMEMLOCK= in the systemd unit)")
	}
	d.server = agent.New(agent.Options{
		PromptEnv:          notify.EnvFromList(os.Environ()),
		Notifier:           n,
		Upstreams:          cfg.upstreams,
		Logger:             logger,
		Debug:              cfg.debug,
		DefaultLifetime:    cfg.lifetime,
		AllowRoot:          cfg.allowRoot,
		MaxConns:           cfg.maxConns,
		MaxConnsPerProcess: cfg.maxConnsPerProcess,
		MaxConnsPerPath:    cfg.maxConnsPerPath,
		IdleTimeout:        cfg.idleTimeout,
		Policy:             ph,
		Audit:              al,
		Seal: func(priv any) (agent.PrivateKey, error) {
			return v.Seal(priv)
		},
		Info: agent.StatusInfo{Socket: cfg.socket, Keystore: cfg.keystore, MemoryLocked: v.Locked(), AuditLog: auditPath, Notes: d.currentNotes},
	})
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.ctx = wctx
	go ph.Watch(wctx, time.Second)
	d.loaded = make(chan struct{})
	go d.loadStoredKeys(wctx)
	al.Append(audit.Record{Event: "start", Detail: fmt.Sprintf("pid %d, socket %s, policy %s", os.Getpid(), cfg.socket, pp)})
	ok = true
	return d, nil
}

func (d *daemon) setNotes(n ...string) {
	d.mu.Lock()
	d.notes = n
	d.mu.Unlock()
}

func (d *daemon) currentNotes() []string {
	d.mu.Lock()
	notes := append([]string(nil), d.notes...)
	d.mu.Unlock()
	if h := d.audit.Health(); h.Reason != "" {
		notes = append(notes, "audit log: "+h.Reason)
	}
	return notes
}

// auditSpaceLow tells the person that the disk under the audit log is so
// full that rotation deleted records younger than the retention period:
// an attack's records may be among them.
func (d *daemon) auditSpaceLow(h audit.Health) {
	if d.policy != nil && d.policy.Get().NotifyMode() == policy.NotifyNever {
		return
	}
	d.notifier.Notify("safe-agent: audit log disk nearly full",
		h.Reason+" Free some space on that disk; `safe-agent status` shows the audit log's state.")
}

// loadStoredKeys loads every key from the keystore into the agent. When
// the keyring cannot be reached (no Secret Service, locked), it says so
// once, keeps the agent serving ssh-add keys, and tries again until the
// keyring is available.
func (d *daemon) loadStoredKeys(ctx context.Context) {
	defer close(d.loaded)
	if d.store.Name() == keystore.NameNone {
		return
	}
	warned := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		keys, problems, err := d.store.Load(lctx)
		cancel()
		if err == nil {
			d.loadMu.Lock()
			n, _ := d.addStored(keys, problems, nil)
			d.loadMu.Unlock()
			d.log.Info("keys loaded from the keystore", "count", n, "keystore", d.store.Name())
			d.setNotes()
			return
		}
		msg := err.Error()
		if msg != warned {
			d.log.Warn("stored keys not loaded: "+msg+"; "+keystoreAdvice(err), "retry", "every 10s")
			warned = msg
		}
		d.setNotes("stored keys not loaded: " + msg)
		if !errors.Is(err, keystore.ErrUnavailable) {
			d.log.Error("keystore", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// addStored loads keys into the agent, except those whose fingerprint
// skip holds (wiped unused); it returns how many it loaded and skipped.
func (d *daemon) addStored(keys []keystore.StoredKey, problems []error, skip map[string]bool) (n, skipped int) {
	for _, p := range problems {
		d.log.Warn("stored key skipped", "problem", p.Error())
	}
	for i := range keys {
		k := &keys[i]
		if skip[k.Fingerprint] {
			clear(k.PrivateKeyPEM)
			skipped++
			continue
		}
		lk, err := d.vault.SealStored(k)
		clear(k.PrivateKeyPEM)
		if err != nil {
			d.log.Warn("stored key not loaded", "fingerprint", k.Fingerprint, "comment", k.Comment, "err", err)
			continue
		}
		info, err := d.server.AddKey(lk, k.Comment, fromStored(k.Settings))
		if err != nil {
			d.log.Warn("stored key not loaded", "fingerprint", k.Fingerprint, "comment", k.Comment, "err", err)
			continue
		}
		n++
		d.log.Info("stored key loaded", "fingerprint", info.Fingerprint, "comment", info.Comment, "type", info.Type, "confirm", info.Confirm)
	}
	return n, skipped
}

// reload reads the policy file again and loads the stored keys the agent
// no longer holds (after `ssh-add -D`), as on SIGHUP.
func (d *daemon) reload(why string) {
	if d.policy != nil {
		_ = d.policy.Reload(why)
	}
	d.reloadStoredKeys(why)
}

// reloadStoredKeys loads, in the background (the keyring may take seconds
// to answer), every stored key the agent does not hold; keys it holds keep
// their state (lifetime, remembered answers). A locked agent is left as
// it is: it would not show the keys anyway, and cannot say which it holds.
func (d *daemon) reloadStoredKeys(why string) {
	if d.store == nil || d.store.Name() == keystore.NameNone || d.ctx == nil {
		return
	}
	d.reloads.Add(1)
	go func() {
		defer d.reloads.Done()
		d.loadMu.Lock()
		defer d.loadMu.Unlock()
		if d.ctx.Err() != nil {
			return
		}
		st := d.server.Status()
		if st.Locked {
			d.log.Warn("stored keys not reloaded: the agent is locked; unlock it and send SIGHUP again (or run `safe-agent load`)", "why", why)
			return
		}
		held := map[string]bool{}
		for _, k := range st.Keys {
			if !k.Certificate {
				held[k.Fingerprint] = true
			}
		}
		lctx, cancel := context.WithTimeout(d.ctx, 15*time.Second)
		keys, problems, err := d.store.Load(lctx)
		cancel()
		if err != nil {
			d.log.Warn("stored keys not reloaded: "+err.Error(), "why", why)
			return
		}
		n, already := d.addStored(keys, problems, held)
		d.log.Info("stored keys reloaded", "why", why, "loaded", n, "already_loaded", already, "keystore", d.store.Name())
	}()
}

func (d *daemon) close() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.loaded != nil {
		<-d.loaded
	}
	d.reloads.Wait() // before the vault that would hold their keys closes
	if d.audit != nil {
		_ = d.audit.Append(audit.Record{Event: "stop", Detail: fmt.Sprintf("pid %d", os.Getpid())})
		if err := d.audit.Close(); err != nil {
			d.log.Error("close audit log", "err", err)
		}
	}
	if d.vault != nil {
		d.vault.Close() // wipes every key slot
	}
	if d.notifier != nil {
		d.notifier.Close()
	}
}

// keystoreAdvice says what to do about a keystore the agent cannot load
// keys from: the keystore's own hint, that the agent keeps serving, and
// the flag that does without the keyring.
func keystoreAdvice(err error) string {
	var parts []string
	if h := hint.Of(err); h != "" {
		parts = append(parts, h)
	}
	parts = append(parts, "keys added with ssh-add still work, and stored keys load as soon as the keyring is available ("+keystoreUnlockHint+")")
	return strings.Join(parts, "; ")
}
