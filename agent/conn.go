package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/agent/internal/sshwire"
	"github.com/safe-agent/safe-agent/policy"
)

// maxFrame is the largest request the agent reads, as OpenSSH's
// AGENT_MAX_LEN. A longer frame closes the connection.
const maxFrame = 256 * 1024

// serverConn is one client connection.
type serverConn struct {
	id     uint64
	c      *net.UnixConn
	ctx    context.Context
	cancel context.CancelFunc
	idle   time.Duration // 0: never closed for being idle
	// origin is the forwarded path this connection is counted against
	// (see admitForwarded); set and read by the connection's goroutine.
	origin string
	// in is the connection's frame reader; its read-ahead may hold a
	// request the client sent before the current one was answered.
	in *frameReader

	// mu orders the read-deadline changes: stop's deadline in the past
	// must never be undone by the idle timer or a prompt's hang-up watch.
	mu sync.Mutex
}

// stop makes an idle connection's pending read return, and cancels
// prompts it waits on; a request being processed still gets its reply.
func (sc *serverConn) stop() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.cancel()
	_ = sc.c.SetReadDeadline(time.Now())
}

// awaitRequest starts the idle timer: the connection now waits for its
// next request, and is closed if none has come in sc.idle.
func (sc *serverConn) awaitRequest() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := sc.ctx.Err(); err != nil {
		return fmt.Errorf("connection stopped: %w", err)
	}
	if sc.idle <= 0 {
		return nil
	}
	return sc.c.SetReadDeadline(time.Now().Add(sc.idle))
}

// busy clears the read deadline while a request is served: a request in
// progress (a prompt waiting for minutes included) is not idleness.
func (sc *serverConn) busy() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.ctx.Err() == nil {
		_ = sc.c.SetReadDeadline(time.Time{})
	}
}

// handle serves one admitted connection until it ends, and returns the
// forwarded path it was counted against ("" if none) for release.
func (s *Server) handle(uc *net.UnixConn, peer peerInfo) (origin string) {
	defer uc.Close()
	id := s.nextConn.Add(1)
	if peer.UID != myUID() && !(peer.UID == 0 && s.opts.AllowRoot) {
		chain, _ := processChain(peer.PID, 2)
		s.log.Warn("connection refused: client runs as another user", "conn", id, "uid", peer.UID, "pid", peer.PID, "process", chain, "agent_uid", myUID())
		drainFirstRequest(uc)
		return ""
	}
	readPeer(&peer)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc := &serverConn{id: id, c: uc, ctx: ctx, cancel: cancel, idle: s.lim.idle}
	defer func() { origin = sc.origin }()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ""
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()

	log := s.log.With("conn", id, "pid", peer.PID)
	if s.opts.Debug {
		log.Debug("connection", "uid", peer.UID, "process", peer.Chain)
	}
	ca := &connAgent{srv: s, conn: sc, peer: peer, log: log}
	sc.in = &frameReader{c: uc, sc: sc}
	err := sshagent.ServeAgent(ca, sc.in)
	ca.flushRecords()
	ca.closeUpstreams()
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Only the idle timer sets a deadline while the connection is
		// not stopped.
		log.Info("connection closed: idle", "idle_for", sc.idle, "process", peer.Chain,
			"path", s.pathText(ca.bind.Hops, ca.bind.Failed))
	case err != nil && !errors.Is(err, io.EOF):
		log.Debug("connection closed", "reason", err)
	}
	return ""
}

// drainFirstRequest reads (and discards) what a refused client sends
// first, briefly, before the connection is closed: the client then sees
// end-of-file, as with OpenSSH's agent, instead of dying of SIGPIPE.
func drainFirstRequest(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	_, _ = c.Read(buf)
}

// frameReader passes the byte stream to ServeAgent unchanged but looks at
// each frame header first, so an oversized frame ends the connection
// before any of it is buffered. It also saves system calls: a request
// (header and body, which clients send in one write) is read with one
// read(2) into a small buffer, and the reply's length, which ServeAgent
// writes on its own, goes out in one writev(2) with the body. The client
// then wakes once per reply instead of twice.
type frameReader struct {
	c        net.Conn
	sc       *serverConn // nil: no idle timer
	in       []byte      // read-ahead: in[inPos:] not yet handed out
	inPos    int
	hdr      [4]byte
	hdrLeft  int    // header bytes not yet handed out
	bodyLeft uint32 // body bytes of the current frame not yet read
	outHdr   [4]byte
	outHeld  bool // outHdr is a reply length waiting for its body
}

// readAhead is the frame reader's buffer: a sign request for a login
// with an RSA certificate fits. Longer bodies are read straight into
// ServeAgent's buffer.
const readAhead = 2048

var errFrameTooLarge = fmt.Errorf("request frame larger than %d bytes", maxFrame)

func (f *frameReader) Read(p []byte) (int, error) {
	if f.hdrLeft == 0 && f.bodyLeft == 0 {
		if err := f.nextHeader(); err != nil {
			return 0, err
		}
	}
	if f.hdrLeft > 0 {
		n := copy(p, f.hdr[4-f.hdrLeft:])
		f.hdrLeft -= n
		return n, nil
	}
	if uint32(len(p)) > f.bodyLeft {
		p = p[:f.bodyLeft]
	}
	var n int
	var err error
	if f.inPos < len(f.in) {
		n = copy(p, f.in[f.inPos:])
		f.inPos += n
	} else {
		n, err = f.c.Read(p)
	}
	f.bodyLeft -= uint32(n)
	if n > 0 && f.bodyLeft == 0 {
		f.requestIn()
	}
	return n, err
}

// nextHeader waits (under the idle timer) for the next frame's length and
// checks it.
func (f *frameReader) nextHeader() error {
	if f.sc != nil {
		if err := f.sc.awaitRequest(); err != nil {
			return err
		}
	}
	for len(f.in)-f.inPos < 4 {
		if err := f.fill(); err != nil {
			if errors.Is(err, io.EOF) && len(f.in) > f.inPos {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	copy(f.hdr[:], f.in[f.inPos:])
	f.inPos += 4
	l := binary.BigEndian.Uint32(f.hdr[:])
	if l > maxFrame {
		return errFrameTooLarge
	}
	f.hdrLeft, f.bodyLeft = 4, l
	if l == 0 {
		f.requestIn()
	}
	return nil
}

// fill reads what the client has sent (at most readAhead bytes in all)
// after the unread part of the buffer.
func (f *frameReader) fill() error {
	if f.in == nil {
		f.in = make([]byte, 0, readAhead)
	}
	if f.inPos > 0 {
		f.in = f.in[:copy(f.in[:cap(f.in)], f.in[f.inPos:])]
		f.inPos = 0
	}
	n, err := f.c.Read(f.in[len(f.in):cap(f.in)])
	f.in = f.in[:len(f.in)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// buffered is how many bytes the client sent that are read ahead and not
// yet served.
func (f *frameReader) buffered() int { return len(f.in) - f.inPos }

// requestIn: the whole frame is read and about to be served.
func (f *frameReader) requestIn() {
	if f.sc != nil {
		f.sc.busy()
	}
}

// Write holds back a 4-byte write (ServeAgent's reply length) and sends it
// with the next one, the reply body, in one system call.
func (f *frameReader) Write(p []byte) (int, error) {
	if !f.outHeld {
		if len(p) == 4 {
			copy(f.outHdr[:], p)
			f.outHeld = true
			return len(p), nil
		}
		return f.c.Write(p)
	}
	f.outHeld = false
	bufs := net.Buffers{f.outHdr[:], p}
	n, err := bufs.WriteTo(f.c)
	return max(int(n)-len(f.outHdr), 0), err
}

// connAgent is the ExtendedAgent for one connection. ServeAgent calls it
// from a single goroutine, so its per-connection state needs no lock.
type connAgent struct {
	srv     *Server
	conn    *serverConn
	peer    peerInfo
	log     *slog.Logger
	bind    sshwire.BindState
	recs    connRecords   // what this connection has written to the audit log
	refused refusalMemory // when the person last refused a prompt here (agent/refusalmemory.go)
	up      *upstreamLink // its connections to upstream agents, made on first use (upstream.go)
}

var errLocked = errors.New("agent is locked")

// List returns the keys a client on this connection may see. Through a
// forwarded agent, each key it hides is a refusal: recorded (once per
// connection, key and path) and notified like a refused signature.
func (a *connAgent) List() ([]*sshagent.Key, error) {
	if a.srv.isLocked() {
		return nil, nil // OpenSSH answers an empty list while locked
	}
	ids := a.withUpstreamKeys(a.srv.keys.list(a.srv.now()))
	out := make([]*sshagent.Key, 0, len(ids))
	remote := forwarded(a.bind.Hops) || a.bind.Failed
	path := ""
	if remote {
		path = a.srv.pathText(a.bind.Hops, a.bind.Failed)
	}
	for _, id := range ids {
		if ok, why := a.visible(id); !ok {
			a.hidden(id, path, why)
			continue
		}
		out = append(out, &sshagent.Key{Format: id.Public.Type(), Blob: []byte(id.Blob), Comment: id.Comment})
	}
	if !remote {
		if a.srv.opts.Debug {
			a.log.Debug("list", "shown", len(out), "loaded", len(ids))
		}
		return out, nil
	}
	// Lists through a forwarded agent are part of the record: they show
	// the far end which keys it could try. One record per path; repeats
	// are counted.
	if a.recs.listed[path] {
		a.repeat("list")
		return out, nil
	}
	if a.recs.listed == nil {
		a.recs.listed = map[string]bool{}
	}
	a.recs.listed[path] = true
	hidden := len(ids) - len(out)
	a.log.Info("list through a forwarded agent", "path", path, "shown", len(out), "keys hidden by policy", hidden)
	a.record("list", audit.Record{Event: audit.EventList, Decision: audit.DecisionAllowed, Client: a.auditClient(), Path: a.srv.auditPath(a.bind.Hops),
		Detail: fmt.Sprintf("%d %s shown, %d hidden (not usable from this path)", len(out), map[bool]string{true: "key", false: "keys"}[len(out) == 1], hidden)})
	return out, nil
}

// hidden records that a list through a forwarded agent hid a key, once
// per connection, key and path, and tells the person as a refused
// signature would.
func (a *connAgent) hidden(id *identity, path string, why policy.Decision) {
	k := id.Blob + "\x00" + path
	if a.recs.hidden[k] {
		return
	}
	if a.recs.hidden == nil {
		a.recs.hidden = map[string]bool{}
	}
	a.recs.hidden[k] = true
	a.log.Warn("key hidden from a list through a forwarded agent", "fingerprint", id.Fingerprint, "comment", id.Comment,
		"path", path, "process", a.peer.Chain, "rule", why.Rule, "reason", why.Reason)
	a.record("hidden key", audit.Record{Event: audit.EventList, Decision: audit.DecisionDenied, Key: auditKey(id), Client: a.auditClient(),
		Path: a.srv.auditPath(a.bind.Hops), Rule: why.Rule, Reason: why.Reason, Detail: "key hidden from the list: not usable from this path"})
	a.srv.notifyHidden(a, id, why)
}

func (a *connAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

// SignWithFlags runs the sign pipeline.
func (a *connAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	return a.sign(key.Marshal(), data, flags)
}

// Add loads a key with its constraints.
func (a *connAgent) Add(k sshagent.AddedKey) error {
	if err := a.localOnly("add"); err != nil {
		return err
	}
	if a.srv.isLocked() {
		return errLocked
	}
	id, err := a.srv.identityOf(k)
	if err != nil {
		a.log.Warn("add refused", "err", err)
		return err
	}
	a.srv.keys.add(id)
	a.srv.auditEvent(audit.Record{Event: audit.EventAdd, Decision: audit.DecisionAllowed, Key: auditKey(id), Client: a.auditClient(),
		Detail: fmt.Sprintf("lifetime %s, confirm %v, ssh-add -h %v, stored %v", lifetimeText(id, a.srv.now()), id.Settings.Confirm, id.Dest != nil, id.Stored)})
	a.log.Info("key added", "fingerprint", id.Fingerprint, "type", id.Type(), "comment", id.Comment,
		"lifetime", lifetimeText(id, a.srv.now()), "confirm", id.Settings.Confirm, "restricted", id.Dest != nil)
	return nil
}

// localOnly refuses requests that change the agent when they come through
// a forwarded agent (or a connection whose bind failed): whoever controls
// a jump host must not add, remove or lock keys. OpenSSH allows it;
// safe-agent is stricter here.
func (a *connAgent) localOnly(op string) error {
	if a.bind.Local() || !forwarded(a.bind.Hops) && !a.bind.Failed {
		return nil
	}
	a.log.Warn("refused: "+op+" through a forwarded agent", "path", a.srv.pathText(a.bind.Hops, a.bind.Failed), "process", a.peer.Chain)
	a.srv.auditEvent(audit.Record{Event: op, Decision: audit.DecisionDenied, Reason: op + " refused: it came through a forwarded agent", Client: a.auditClient(), Path: a.srv.auditPath(a.bind.Hops)})
	return fmt.Errorf("%s refused through a forwarded agent", op)
}

// identityOf validates a key added over the agent protocol and its
// constraints, and holds it (newIdentity).
func (s *Server) identityOf(k sshagent.AddedKey) (*identity, error) {
	if err := checkKeyType(k.PrivateKey); err != nil {
		return nil, err
	}
	set := policy.Settings{Confirm: k.ConfirmBeforeUse, Lifetime: time.Duration(k.LifetimeSecs) * time.Second}
	var stored bool
	var dest *sshwire.DestConstraints
	for _, ext := range k.ConstraintExtensions {
		switch ext.ExtensionName {
		case ExtKeySettings:
			var err error
			if stored, err = parseKeySettings(ext.ExtensionDetails, &set); err != nil {
				return nil, err
			}
		case extRestrictDestination:
			if dest != nil {
				return nil, errors.New("more than one destination constraint")
			}
			d, err := sshwire.ParseDestConstraints(ext.ExtensionDetails)
			if err != nil {
				return nil, fmt.Errorf("destination constraint: %w", err)
			}
			dest = d
		default:
			// As OpenSSH: a constraint we cannot enforce fails the add.
			return nil, fmt.Errorf("unsupported key constraint %q", ext.ExtensionName)
		}
	}
	priv, err := s.opts.Seal(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("hold private key: %w", err)
	}
	var pub ssh.PublicKey = priv.PublicKey()
	if k.Certificate != nil {
		pub = k.Certificate
	}
	id, err := s.newIdentity(priv, pub, k.Comment, set, stored)
	if err != nil {
		return nil, err
	}
	id.Dest = dest
	return id, nil
}

func auditKey(id *identity) *audit.Key {
	return &audit.Key{Fingerprint: id.Fingerprint, Type: id.Type(), Comment: id.Comment, Cert: auditCert(id.Cert()), Upstream: id.Upstream}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func lifetimeText(id *identity, now time.Time) string {
	if id.Expires.IsZero() {
		return "forever"
	}
	return id.Expires.Sub(now).Round(time.Second).String()
}

// Remove unloads one key.
func (a *connAgent) Remove(key ssh.PublicKey) error {
	if err := a.localOnly("remove"); err != nil {
		return err
	}
	if a.srv.isLocked() {
		return errLocked
	}
	id, ok := a.srv.keys.remove(key.Marshal())
	if !ok {
		if err := a.removeUpstreamKey(key.Marshal()); err != nil {
			return err
		}
		return errNotFound
	}
	a.srv.forgetKey(id.Fingerprint)
	a.srv.auditEvent(audit.Record{Event: audit.EventRemove, Decision: audit.DecisionAllowed, Key: auditKey(id), Client: a.auditClient()})
	a.log.Info("key removed", "fingerprint", id.Fingerprint, "comment", id.Comment)
	return nil
}

// RemoveAll unloads every key.
func (a *connAgent) RemoveAll() error {
	if err := a.localOnly("remove-all"); err != nil {
		return err
	}
	if a.srv.isLocked() {
		return errLocked
	}
	gone := a.srv.keys.removeAll()
	a.srv.forget()
	a.srv.auditEvent(audit.Record{Event: audit.EventRemoveAll, Decision: audit.DecisionAllowed, Client: a.auditClient(), Detail: fmt.Sprintf("%d keys", len(gone))})
	a.log.Info("all keys removed", "count", len(gone))
	return nil
}

func (a *connAgent) Lock(passphrase []byte) error {
	if err := a.localOnly("lock"); err != nil {
		return err
	}
	if err := a.srv.lock(passphrase); err != nil {
		return err
	}
	a.srv.forget()
	a.srv.auditEvent(audit.Record{Event: audit.EventLock, Decision: audit.DecisionAllowed, Client: a.auditClient()})
	a.log.Info("agent locked")
	return nil
}

func (a *connAgent) Unlock(passphrase []byte) error {
	if err := a.localOnly("unlock"); err != nil {
		return err
	}
	if err := a.srv.unlock(passphrase); err != nil {
		a.srv.auditEvent(audit.Record{Event: audit.EventUnlock, Decision: audit.DecisionDenied, Reason: err.Error(), Client: a.auditClient()})
		return err
	}
	a.srv.auditEvent(audit.Record{Event: audit.EventUnlock, Decision: audit.DecisionAllowed, Client: a.auditClient()})
	a.log.Info("agent unlocked")
	return nil
}

// Signers is not part of the wire protocol; ServeAgent never calls it.
func (a *connAgent) Signers() ([]ssh.Signer, error) {
	return nil, errors.New("signers are not exported")
}

// Extension handles SSH_AGENTC_EXTENSION. Unknown extensions answer
// SSH_AGENT_FAILURE (ErrExtensionUnsupported) and the agent keeps serving.
func (a *connAgent) Extension(extensionType string, contents []byte) ([]byte, error) {
	switch extensionType {
	case extSessionBind:
		if err := a.sessionBind(contents); err != nil {
			return nil, err
		}
		return nil, a.srv.admitForwarded(a)
	case ExtList, ExtStatus, ExtForget:
		return a.manage(extensionType)
	}
	if a.srv.opts.Debug {
		a.log.Debug("unsupported extension", "name", extensionType)
	}
	return nil, sshagent.ErrExtensionUnsupported
}
