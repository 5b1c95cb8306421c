// Package agent is safe-agent's daemon: the socket, per-connection state
// (peer, process chain, session-bind hops) and the one pipeline every sign
// request takes: bind → classify → decide → confirm → sign → audit.
//
// The wire protocol is golang.org/x/crypto/ssh/agent's ServeAgent, with one
// ExtendedAgent value per connection so that per-connection state lives on
// it; the identity table (with constraints) is the agent's own.
package agent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/notify"
	"github.com/safe-agent/safe-agent/policy"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// Debug logs every request (never key material or signed data).
	Debug bool
	// DefaultLifetime applies to keys added without a lifetime (ssh-agent -t).
	DefaultLifetime time.Duration
	// Seal holds private keys; nil means plain heap keys (sealPlain).
	Seal Sealer
	// AllowRoot lets uid 0 use an agent that runs as another user.
	AllowRoot bool
	// MaxConns bounds concurrent connections; more are accepted and
	// closed at once (with a log line). 0 means DefaultMaxConns.
	MaxConns int
	// MaxConnsPerProcess bounds one client process's concurrent
	// connections (every channel of one `ssh -A` session comes from one
	// local ssh). 0 means DefaultMaxConnsPerProcess, negative no bound.
	MaxConnsPerProcess int
	// MaxConnsPerPath bounds the concurrent connections through one
	// forwarded path (see forwardOrigin); the connection over it is closed
	// when its session-bind makes it forwarded. 0 means
	// DefaultMaxConnsPerPath, negative no bound.
	MaxConnsPerPath int
	// ReservedConns of MaxConns are kept for processes that have no other
	// connection open, so a local `ssh-add` gets in while one process
	// holds everything else. 0 means min(DefaultReservedConns,
	// MaxConns/64), negative none.
	ReservedConns int
	// IdleTimeout closes a connection that sent no request for this long
	// while no request was in progress on it (a prompt waiting is a
	// request in progress). 0 means DefaultIdleTimeout, negative never.
	IdleTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Policy is the policy in force (reloadable); nil means built-in defaults.
	Policy *PolicyHolder
	// Audit receives one record per decision; nil disables auditing
	// (tests only: `serve` always audits).
	Audit *audit.Log
	// Info is shown by `safe-agent status`.
	Info StatusInfo
	// PromptEnv is the graphical session the agent runs in, for prompt
	// programs (DISPLAY, WAYLAND_DISPLAY, SSH_ASKPASS, PATH…).
	PromptEnv notify.Env
	// Notifier tells the person about uses and refusals; nil: no notices.
	Notifier notify.Notifier
	// Upstreams are the sockets of upstream agents whose keys the agent
	// fronts (serve --upstream), besides the policy file's upstream list.
	Upstreams []string
}

// peerInfo is who is on the other end of a connection.
type peerInfo struct {
	PID, UID, GID int
	Exe           string // executable path, if readable
	Chain         string // "ssh (1234) ← git (1200) ← zsh (1000)"
	// Client is the chain for client rules, read once when the
	// connection is made (readPeer); start identifies the process, so
	// that a decision can check the pid still belongs to it.
	Client *policy.Client
	start  uint64
}

// Server is the agent: the identity table and the connections using it.
type Server struct {
	opts          Options
	log           *slog.Logger
	defaultPolicy *policy.Policy
	keys          *table
	now           func() time.Time
	started       time.Time

	lockMu    sync.Mutex
	locked    bool
	lockSalt  []byte
	lockHash  []byte
	failCount int

	lim      connLimits
	refusals refusalLog
	budgets  auditBudgets   // what forwarded paths may write to the audit log
	unbound  unboundClients // programs that sign logins without session-bind
	up       *upstreamSet   // upstream agents whose keys it fronts (upstream.go)

	mu        sync.Mutex
	conns     map[*serverConn]struct{}
	open      int            // admitted connections (see admit)
	perPID    map[int]int    // admitted connections by client pid
	perPath   map[string]int // forwarded connections by forwardOrigin
	listeners []net.Listener
	closing   bool
	wg        sync.WaitGroup
	nextConn  atomic.Uint64
	stopReap  chan struct{}

	askMu     sync.Mutex
	asker     *notify.Asker
	askerKey  string
	clientEnv atomic.Pointer[notify.Env]
	tmux      tmuxTargets // prompt text → the requesting client's tmux (no display)
	reapDone  chan struct{}
}

// New returns a Server; call Serve to accept connections.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Seal == nil {
		o.Seal = sealPlain
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		opts:          o,
		defaultPolicy: policy.Default(),
		log:           o.Logger,
		keys:          newTable(),
		started:       o.Now(),
		now:           o.Now,
		lim:           resolveLimits(o),
		conns:         map[*serverConn]struct{}{},
		perPID:        map[int]int{},
		perPath:       map[string]int{},
		stopReap:      make(chan struct{}),
		reapDone:      make(chan struct{}),
	}
	s.startUpstreams()
	go s.reapLoop()
	return s
}

// reapLoop removes keys whose lifetime ended, waking at the next expiry
// (or when the table changes), so expired keys vanish at once.
func (s *Server) reapLoop() {
	defer close(s.reapDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		gone, next := s.keys.reap(s.now())
		for _, id := range gone {
			s.forgetKey(id.Fingerprint)
			if id.CertExpiry {
				s.certExpired(id)
				continue
			}
			s.log.Info("key lifetime ended; removed", "fingerprint", id.Fingerprint, "comment", id.Comment)
			s.auditEvent(audit.Record{Event: audit.EventRemove, Decision: audit.DecisionAllowed, Key: auditKey(id), Reason: "lifetime ended"})
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.now()), 10*time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-s.stopReap:
			return
		case <-s.keys.wake:
		case <-timer.C:
		}
	}
}

// Serve accepts connections on l until Shutdown. It returns nil after a
// Shutdown and the accept error otherwise.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("agent is shutting down")
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off, keep serving.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		s.accept(uc)
	}
}

// accept admits a connection under the limits and serves it, or closes
// it at once: a refused connection costs no goroutine and no read.
func (s *Server) accept(uc *net.UnixConn) {
	peer, err := peerCred(uc)
	if err != nil {
		s.log.Warn("connection refused: cannot read peer credentials", "err", err)
		uc.Close()
		return
	}
	if why := s.admit(peer.PID); why != "" {
		uc.Close()
		s.refusedAtAccept(peer, why)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		origin := s.handle(uc, peer)
		s.release(peer.PID, origin)
	}()
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, lets requests in flight finish their reply,
// closes idle connections and waits for them (until ctx ends).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		for _, l := range s.listeners {
			l.Close()
		}
		for c := range s.conns {
			c.stop()
		}
		close(s.stopReap)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); <-s.reapDone; close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: connections still open: %w", ctx.Err())
	}
	s.keys.removeAll() // wipes every key
	return err
}

// lock implements SSH_AGENTC_LOCK.
func (s *Server) lock(pass []byte) error {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.locked {
		return errors.New("agent already locked")
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	s.lockSalt, s.lockHash = salt, lockDigest(salt, pass)
	s.locked = true
	s.failCount = 0
	return nil
}

// unlock implements SSH_AGENTC_UNLOCK: a constant-time compare, and after
// each wrong passphrase a delay that grows by 0.1 s up to 10 s, as
// OpenSSH's agent does, so guessing is slow.
func (s *Server) unlock(pass []byte) error {
	s.lockMu.Lock()
	if !s.locked {
		s.lockMu.Unlock()
		return errors.New("agent is not locked")
	}
	if hmac.Equal(lockDigest(s.lockSalt, pass), s.lockHash) {
		s.locked = false
		s.lockSalt, s.lockHash = nil, nil
		s.failCount = 0
		s.lockMu.Unlock()
		return nil
	}
	if s.failCount < 100 {
		s.failCount++
	}
	delay := time.Duration(s.failCount) * 100 * time.Millisecond
	s.lockMu.Unlock()
	s.log.Warn("unlock failed: wrong passphrase", "delay", delay)
	time.Sleep(delay)
	return errors.New("wrong passphrase")
}

func lockDigest(salt, pass []byte) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write(pass)
	return m.Sum(nil)
}

func (s *Server) isLocked() bool {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	return s.locked
}

// myUID is the agent's effective uid, the only one allowed to connect.
func myUID() int { return os.Geteuid() }
