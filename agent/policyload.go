package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// PolicyHolder holds the policy in force and reloads it: on SIGHUP and
// when the file, or one of the known_hosts files it reads, changes (a new
// @revoked line must apply at once). A broken file keeps the last good
// policy.
type PolicyHolder struct {
	path     string
	explicit bool // named by --policy or SAFE_AGENT_POLICY: must exist
	log      *slog.Logger
	audit    *audit.Log
	cur      atomic.Pointer[policy.Policy]

	mu      sync.Mutex
	stamp   fileStamp
	hosts   []pathStamp // the known_hosts files the policy in force read
	lastErr error
}

type pathStamp struct {
	path  string
	stamp fileStamp
}

func stampsOf(paths []string) []pathStamp {
	out := make([]pathStamp, len(paths))
	for i, p := range paths {
		out[i] = pathStamp{p, stampOf(p)}
	}
	return out
}

// changed names the first watched file that changed since the last load,
// or "".
func (h *PolicyHolder) changed() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if stampOf(h.path) != h.stamp {
		return h.path
	}
	for _, ps := range h.hosts {
		if stampOf(ps.path) != ps.stamp {
			return ps.path
		}
	}
	return ""
}

type fileStamp struct {
	exists bool
	mod    time.Time
	size   int64
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{exists: true, mod: fi.ModTime(), size: fi.Size()}
}

// LoadPolicyFile loads path; a missing file that was not explicitly named
// gives the built-in defaults.
func LoadPolicyFile(path string, explicit bool) (*policy.Policy, error) {
	p, err := policy.Load(path)
	if err != nil && !explicit && errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			// The built-in defaults, with host names from ~/.ssh/known_hosts.
			return policy.LoadDefaults()
		}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// NewPolicyHolder loads the policy once; an invalid file is an error
// (serve refuses to start on one).
func NewPolicyHolder(path string, explicit bool, log *slog.Logger, a *audit.Log) (*PolicyHolder, error) {
	h := &PolicyHolder{path: path, explicit: explicit, log: log, audit: a}
	h.stamp = stampOf(path)
	p, err := LoadPolicyFile(path, explicit)
	if err != nil {
		return nil, err
	}
	h.cur.Store(p)
	h.hosts = stampsOf(p.KnownHostsFiles())
	releaseLoadGarbage()
	h.record(audit.Record{Event: audit.EventPolicyLoad, Detail: h.describe()})
	return h, nil
}

func (h *PolicyHolder) describe() string {
	if h.stamp.exists {
		return h.path
	}
	return h.path + " (missing: built-in defaults)"
}

// Get returns the policy in force.
func (h *PolicyHolder) Get() *policy.Policy { return h.cur.Load() }

// Path is the policy file's path.
func (h *PolicyHolder) Path() string { return h.path }

// LastError is the error of the last failed reload, nil if it succeeded.
func (h *PolicyHolder) LastError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// Reload reads the file again. On error the last good policy stays.
func (h *PolicyHolder) Reload(why string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stamp = stampOf(h.path)
	// Stamped before reading, so a change during the load is seen next time.
	hosts := stampsOf(h.cur.Load().KnownHostsFiles())
	p, err := LoadPolicyFile(h.path, h.explicit)
	if err != nil {
		h.hosts = hosts
		h.lastErr = err
		h.log.Error("policy reload failed; the last good policy stays in force", "trigger", why, "err", err)
		h.record(audit.Record{Event: audit.EventPolicyReloadFailed, Reason: err.Error(), Detail: h.path})
		return fmt.Errorf("reload policy: %w", err)
	}
	h.lastErr = nil
	if !slices.Equal(p.KnownHostsFiles(), h.cur.Load().KnownHostsFiles()) {
		hosts = stampsOf(p.KnownHostsFiles())
	}
	h.hosts = hosts
	h.cur.Store(p)
	releaseLoadGarbage()
	h.log.Info("policy reloaded", "trigger", why, "path", h.describe())
	h.record(audit.Record{Event: audit.EventPolicyLoad, Detail: h.describe()})
	return nil
}

func (h *PolicyHolder) record(r audit.Record) {
	if h.audit == nil {
		return
	}
	if err := h.audit.Append(r); err != nil {
		h.log.Error("audit log write failed", "event", r.Event, "err", err)
	}
}

// Watch polls the policy file and its known_hosts files (every interval)
// and reloads when one changes, until ctx ends. Polling needs no extra
// dependency and catches editors that replace a file by rename.
func (h *PolicyHolder) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f := h.changed(); f != "" {
			why := "file changed"
			if f != h.path {
				why = "known_hosts file changed: " + f
			}
			_ = h.Reload(why)
		}
	}
}

// releaseLoadGarbage returns the memory a policy load churned through (a
// large known_hosts is parsed and hashed once) to the system at once,
// instead of keeping it resident for the agent's lifetime.
func releaseLoadGarbage() { debug.FreeOSMemory() }
