package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/safe-agent/safe-agent/agent/audit"
)

// Upstream agents (issue 16): agents that hold keys safe-agent cannot
// (a YubiKey's, a TPM's, a vault app's). Their keys are listed with the
// agent's own and signed for through the same pipeline; only the sign
// step differs: the request goes to the upstream agent, on a connection
// that belongs to the client's connection and carries that connection's
// verified session-binds. Adds, removes and locks never go upstream.

const (
	// upstreamListCap bounds an upstream list request (with the
	// configured timeout, whichever is shorter): a list must not hold up
	// every ssh that starts while an upstream is slow.
	upstreamListCap = 5 * time.Second
	// upstreamStatusCap bounds the check behind status and doctor: the
	// CLI waits 5 s for the whole status.
	upstreamStatusCap = 2 * time.Second
	// upstreamRetry: an upstream that failed is tried again at most this
	// often; in between, requests get its last error at once.
	upstreamRetry = time.Second
	// upstreamBindExt is replayed to upstream agents as received.
	upstreamBindExt = "session-bind@openssh.com"
)

// UpstreamStatus is one upstream agent's health, for status and doctor.
type UpstreamStatus struct {
	Socket    string `json:"socket"`
	Reachable bool   `json:"reachable"`
	Keys      int    `json:"keys"`
	LastError string `json:"last_error,omitempty"`
}

// upstreamConfig is what the policy and the serve flags say now.
type upstreamConfig struct {
	sockets []string      // in order, each once
	timeout time.Duration // one sign request
}

func (c upstreamConfig) listTimeout() time.Duration { return min(upstreamListCap, c.timeout) }

// mergeSockets is the flag's sockets, then the policy's, each once.
func mergeSockets(flag, pol []string) []string {
	var out []string
	for _, s := range append(slices.Clone(flag), pol...) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// upstreamFailure is why a request to an upstream agent failed.
type upstreamFailure int

const (
	upstreamRefused     upstreamFailure = iota // the agent answered: no
	upstreamTimeout                            // no answer in time
	upstreamUnreachable                        // no connection, or it broke
)

// upstreamError is a failed upstream request; its text is the audit
// record's reason.
type upstreamError struct {
	socket  string
	kind    upstreamFailure
	what    string        // "signature request", "session-bind (hop 2)", "list request"
	timeout time.Duration // upstreamTimeout
	err     error         // upstreamUnreachable
}

func (e *upstreamError) Error() string {
	switch e.kind {
	case upstreamRefused:
		return fmt.Sprintf("upstream agent %s refused the %s", e.socket, e.what)
	case upstreamTimeout:
		return fmt.Sprintf("upstream agent %s did not answer within %s (%s)", e.socket, e.timeout, e.what)
	}
	return fmt.Sprintf("upstream agent %s unreachable: %v", e.socket, e.err)
}

func (e *upstreamError) Unwrap() error { return e.err }

// bindSupport is whether an upstream accepts session-bind@openssh.com.
// An agent without it (gpg-agent, yubikey-agent, most vault agents)
// answers SSH_AGENT_FAILURE, exactly as a refusal looks, so a probe of
// safe-agent's own decides (probeBindSupport). For an agent that accepts
// binds, a refused client bind is a refusal.
type bindSupport int

const (
	bindsUnknown bindSupport = iota
	bindsAccepted
	bindsUnsupported
)

// upstream is one upstream agent's shared state: health and the keys it
// listed last. mu guards the fields, never I/O.
type upstream struct {
	socket string

	mu        sync.Mutex
	reachable bool
	contacted bool // a request has been tried
	keys      []*identity
	lastErr   string
	retryAt   time.Time // no new connection before this, after a failure
	binds     bindSupport
}

// upstreamSet is the server's upstream agents, shared by all connections.
type upstreamSet struct {
	config func() upstreamConfig
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	bySocket map[string]*upstream
}

func newUpstreamSet(config func() upstreamConfig, log *slog.Logger, now func() time.Time) *upstreamSet {
	return &upstreamSet{config: config, log: log, now: now, bySocket: map[string]*upstream{}}
}

// current returns the configured upstreams, in order, and the config.
func (s *upstreamSet) current() ([]*upstream, upstreamConfig) {
	cfg := s.config()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*upstream, 0, len(cfg.sockets))
	for _, sock := range cfg.sockets {
		u := s.bySocket[sock]
		if u == nil {
			u = &upstream{socket: sock}
			s.bySocket[sock] = u
		}
		out = append(out, u)
	}
	return out, cfg
}

// configured reports whether any upstream is configured (cheap: no lock
// beyond the config's own).
func (s *upstreamSet) configured() bool { return s != nil && len(s.config().sockets) > 0 }

// find returns the upstream identity for a public key blob, from the
// keys each configured upstream listed last (in upstream order).
func (s *upstreamSet) find(blob []byte) *identity {
	if !s.configured() {
		return nil
	}
	ups, _ := s.current()
	for _, u := range ups {
		if id := u.find(blob); id != nil {
			return id
		}
	}
	return nil
}

// status probes every upstream (in parallel, each within
// upstreamStatusCap, at most once a second) and reports its health.
func (s *upstreamSet) status() []UpstreamStatus {
	if !s.configured() {
		return nil
	}
	ups, cfg := s.current()
	cfg.timeout = min(cfg.timeout, upstreamStatusCap)
	out := make([]UpstreamStatus, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() {
			s.probe(u, cfg)
			out[i] = u.status()
		})
	}
	wg.Wait()
	return out
}

// probe lists an upstream's keys on a connection of its own, with no
// binds (as a local client would), and closes it.
func (s *upstreamSet) probe(u *upstream, cfg upstreamConfig) {
	l := &upstreamLink{set: s}
	defer l.close()
	_, _ = l.listOne(u, cfg)
}

// checkAtStart logs each configured upstream's state once, at start:
// a missing socket is a warning, never fatal.
func (s *upstreamSet) checkAtStart() {
	for _, st := range s.status() {
		if st.Reachable {
			s.log.Info("upstream agent reachable", "socket", st.Socket, "keys", st.Keys)
		}
		// Unreachable ones were logged by failed().
	}
}

func (u *upstream) find(blob []byte) *identity {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range u.keys {
		if id.Blob == string(blob) {
			return id
		}
	}
	return nil
}

func (u *upstream) status() UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := UpstreamStatus{Socket: u.socket, Reachable: u.reachable, LastError: u.lastErr}
	if u.reachable {
		st.Keys = len(u.keys) // an unreachable one offers none
	}
	return st
}

// mayConnect refuses a new connection within upstreamRetry of a failure,
// with that failure.
func (u *upstream) mayConnect(now time.Time) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.contacted && !u.reachable && now.Before(u.retryAt) {
		return &upstreamError{socket: u.socket, kind: upstreamUnreachable, err: fmt.Errorf("%s (retried at most once a second)", u.lastErr)}
	}
	return nil
}

// failed records a failure. A timeout of a sign request (a touch or a
// PIN not given) leaves the agent reachable; anything else makes it
// unreachable until it answers again.
func (u *upstream) failed(e *upstreamError, signing bool, now time.Time, log *slog.Logger) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lastErr = e.shortText()
	if e.kind == upstreamRefused || signing && e.kind == upstreamTimeout {
		return
	}
	if u.reachable || !u.contacted {
		log.Warn("upstream agent unreachable; its keys are not offered until it answers (retried at most once a second)", "socket", u.socket, "err", u.lastErr)
	}
	u.contacted, u.reachable = true, false
	u.retryAt = now.Add(upstreamRetry)
}

// shortText is the failure without the socket, for status lines that
// already name it.
func (e *upstreamError) shortText() string {
	switch e.kind {
	case upstreamRefused:
		return "refused the " + e.what
	case upstreamTimeout:
		return fmt.Sprintf("did not answer within %s (%s)", e.timeout, e.what)
	}
	return e.err.Error()
}

// answered records a successful request; keys, if not nil, is what the
// agent listed.
func (u *upstream) answered(keys []*sshagent.Key, log *slog.Logger) []*identity {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.contacted && !u.reachable {
		// It may be another program now: learn its session-bind support again.
		u.binds = bindsUnknown
		log.Info("upstream agent reachable again", "socket", u.socket)
	}
	u.contacted, u.reachable, u.lastErr = true, true, ""
	if keys == nil {
		return nil
	}
	ids := make([]*identity, 0, len(keys))
	for _, k := range keys {
		id := u.identityLocked(k)
		if id == nil {
			log.Debug("upstream key skipped: cannot parse its public key", "socket", u.socket, "format", k.Format)
			continue
		}
		ids = append(ids, id)
	}
	u.keys = ids
	return ids
}

// identityLocked is the upstream identity for a listed key; one already
// known is reused (it caches its certificate check).
func (u *upstream) identityLocked(k *sshagent.Key) *identity {
	for _, id := range u.keys {
		if id.Blob == string(k.Blob) && id.Comment == k.Comment {
			return id
		}
	}
	pub, err := ssh.ParsePublicKey(k.Blob)
	if err != nil {
		return nil
	}
	fp := ssh.FingerprintSHA256(pub)
	if c, ok := pub.(*ssh.Certificate); ok {
		fp = ssh.FingerprintSHA256(c.Key)
	}
	return &identity{Public: pub, Blob: string(k.Blob), Comment: k.Comment, Fingerprint: fp, Upstream: u.socket}
}

func (u *upstream) bindSupport() bindSupport {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.binds
}

func (u *upstream) setBindSupport(b bindSupport) (changed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	changed = u.binds != b
	u.binds = b
	return changed
}

// upstreamLink is one client connection's connections to the upstream
// agents: opened when first needed, closed with the client's connection.
// Requests on it come from the client connection's goroutine (a list
// asks the upstreams in parallel, one request per upstream connection at
// a time), each under a deadline; mu guards the map against those and
// against close and abort from other goroutines.
type upstreamLink struct {
	set   *upstreamSet
	binds [][]byte // the client connection's verified session-binds, as received

	mu     sync.Mutex
	conns  map[string]*upstreamConn
	closed bool
}

// upstreamConn is one connection to one upstream agent.
type upstreamConn struct {
	nc   net.Conn
	rw   *upstreamRW
	ag   sshagent.ExtendedAgent
	sent int // binds replayed on it
	used bool
}

// upstreamRW gives x/crypto's agent client Read and Write only, so it
// serialises requests (no background reader), and remembers the first
// I/O error: an error with none is the agent's answer (a refusal).
type upstreamRW struct {
	nc    net.Conn
	ioErr error
}

func (c *upstreamRW) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	if err != nil && c.ioErr == nil {
		c.ioErr = err
	}
	return n, err
}

func (c *upstreamRW) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	if err != nil && c.ioErr == nil {
		c.ioErr = err
	}
	return n, err
}

func newUpstreamLink(set *upstreamSet) *upstreamLink { return &upstreamLink{set: set} }

// addBind keeps a verified session-bind for replay, in order.
func (l *upstreamLink) addBind(raw []byte) {
	l.binds = append(l.binds, slices.Clone(raw))
}

// list returns every configured upstream's keys, in upstream order, each
// key once. The upstreams are asked at once (each on its own connection),
// so a slow one costs its own timeout, not the sum. An upstream that fails
// contributes nothing (and is logged and retried by its health state).
func (l *upstreamLink) list() []*identity {
	ups, cfg := l.set.current()
	each := make([][]*identity, len(ups))
	if len(ups) == 1 {
		each[0], _ = l.listOne(ups[0], cfg)
	} else {
		var wg sync.WaitGroup
		for i, u := range ups {
			wg.Go(func() { each[i], _ = l.listOne(u, cfg) })
		}
		wg.Wait()
	}
	var out []*identity
	for _, ids := range each {
		for _, id := range ids {
			if !slices.ContainsFunc(out, func(o *identity) bool { return o.Blob == id.Blob }) {
				out = append(out, id)
			}
		}
	}
	return out
}

func (l *upstreamLink) listOne(u *upstream, cfg upstreamConfig) ([]*identity, error) {
	var keys []*sshagent.Key
	err := l.do(u, cfg.listTimeout(), "list request", false, func(ag sshagent.ExtendedAgent) (err error) {
		keys, err = ag.List()
		return err
	})
	if err != nil {
		return nil, err
	}
	if keys == nil {
		keys = []*sshagent.Key{}
	}
	return u.answered(keys, l.set.log), nil
}

// sign sends a sign request for an upstream identity. The signature is
// checked against the key: a wrong one is not passed on.
func (l *upstreamLink) sign(id *identity, data []byte, flags sshagent.SignatureFlags) (*ssh.Signature, error) {
	ups, cfg := l.set.current()
	i := slices.IndexFunc(ups, func(u *upstream) bool { return u.socket == id.Upstream })
	if i < 0 {
		return nil, &upstreamError{socket: id.Upstream, kind: upstreamUnreachable, err: errors.New("no longer configured")}
	}
	u := ups[i]
	var sig *ssh.Signature
	err := l.do(u, cfg.timeout, "signature request", true, func(ag sshagent.ExtendedAgent) (err error) {
		sig, err = ag.SignWithFlags(id.Public, data, flags)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := verifyKey(id.Public).Verify(data, sig); err != nil {
		return nil, &upstreamError{socket: u.socket, kind: upstreamRefused, what: "signature request: its signature does not verify"}
	}
	return sig, nil
}

// verifyKey is the key a signature by pub is checked with.
func verifyKey(pub ssh.PublicKey) ssh.PublicKey {
	if c, ok := pub.(*ssh.Certificate); ok {
		return c.Key
	}
	return pub
}

// do runs one request on u's connection under timeout: connect if
// needed, replay new binds, then fn. A connection that was used before
// and turns out broken is replaced once (the agent may have restarted).
func (l *upstreamLink) do(u *upstream, timeout time.Duration, what string, signing bool, fn func(sshagent.ExtendedAgent) error) error {
	for attempt := 0; ; attempt++ {
		c, err := l.conn(u, timeout)
		if err != nil {
			return err
		}
		ue := l.attempt(u, c, timeout, what, fn)
		if ue == nil {
			c.used = true
			u.answered(nil, l.set.log)
			return nil
		}
		if ue.kind == upstreamUnreachable && c.used && attempt == 0 {
			continue
		}
		u.failed(ue, signing, l.set.now(), l.set.log)
		return ue
	}
}

// attempt replays binds and runs fn on c. Any failure closes c.
func (l *upstreamLink) attempt(u *upstream, c *upstreamConn, timeout time.Duration, what string, fn func(sshagent.ExtendedAgent) error) *upstreamError {
	_ = c.nc.SetDeadline(time.Now().Add(timeout))
	if ue := l.replay(u, c, timeout); ue != nil {
		return ue
	}
	if err := fn(c.ag); err != nil {
		return l.failure(u, c, timeout, what)
	}
	_ = c.nc.SetDeadline(time.Time{})
	return nil
}

// failure turns a client error into an upstreamError. The connection is
// dropped whatever the failure: after an I/O error or a reply the client
// could not read whole, later replies may be out of step (the next
// request dials again and replays the binds).
func (l *upstreamLink) failure(u *upstream, c *upstreamConn, timeout time.Duration, what string) *upstreamError {
	l.drop(u.socket, c)
	ioErr := c.rw.ioErr
	if ioErr == nil {
		return &upstreamError{socket: u.socket, kind: upstreamRefused, what: what}
	}
	if errors.Is(ioErr, os.ErrDeadlineExceeded) && !l.isClosed() {
		return &upstreamError{socket: u.socket, kind: upstreamTimeout, what: what, timeout: timeout}
	}
	return &upstreamError{socket: u.socket, kind: upstreamUnreachable, err: connErrText(ioErr)}
}

// connErrText names a broken connection without Go's internals.
func connErrText(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("connection closed")
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return errors.New("the agent closed the connection")
	}
	return err
}

// replay sends the binds c has not seen yet, in order. Whether the
// upstream knows session-bind at all is learnt from a probe of its own
// (probeBindSupport), never from a client's bind: a client that could get
// its first bind refused would otherwise switch replay off, and an
// upstream's own destination constraints with it (OpenSSH's agent treats
// a connection without binds as local). An upstream that accepts binds
// and refuses one of the client's has refused the request.
func (l *upstreamLink) replay(u *upstream, c *upstreamConn, timeout time.Duration) *upstreamError {
	if c.sent >= len(l.binds) {
		return nil
	}
	support := u.bindSupport()
	if support == bindsUnknown {
		support = l.learnBindSupport(u, timeout)
	}
	if support == bindsUnsupported {
		c.sent = len(l.binds)
		return nil
	}
	for c.sent < len(l.binds) {
		if _, err := c.ag.Extension(upstreamBindExt, l.binds[c.sent]); err != nil {
			return l.failure(u, c, timeout, fmt.Sprintf("session-bind (hop %d)", c.sent+1))
		}
		c.sent++
	}
	return nil
}

// learnBindSupport probes u and records the answer; a probe that cannot
// tell (the agent unreachable, no answer in time) counts as support, so
// the client's binds are sent and a refusal stays a refusal.
func (l *upstreamLink) learnBindSupport(u *upstream, timeout time.Duration) bindSupport {
	b, err := probeBindSupport(u.socket, timeout)
	if err != nil {
		l.set.log.Debug("session-bind probe of an upstream agent failed", "socket", u.socket, "err", err)
		return bindsAccepted
	}
	if u.setBindSupport(b) && b == bindsUnsupported {
		l.set.log.Warn("upstream agent does not accept session-bind; its own destination constraints cannot apply (safe-agent's policy still does)", "socket", u.socket)
	}
	return b
}

// probeBindSupport asks the agent at socket, on a connection of its own,
// to accept a session-bind that any agent knowing the extension accepts:
// a fresh host key's valid signature over a random session id.
func probeBindSupport(socket string, timeout time.Duration) (bindSupport, error) {
	bind, err := probeBind()
	if err != nil {
		return bindsUnknown, err
	}
	nc, err := net.DialTimeout("unix", socket, timeout)
	if err != nil {
		return bindsUnknown, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	rw := &upstreamRW{nc: nc}
	if _, err := sshagent.NewClient(rw).Extension(upstreamBindExt, bind); err != nil {
		if rw.ioErr != nil {
			return bindsUnknown, rw.ioErr
		}
		return bindsUnsupported, nil
	}
	return bindsAccepted, nil
}

// probeBind is a valid session-bind@openssh.com body (RFC 4251 strings
// hostkey, session id, signature; a bool "forwarding") for a throwaway
// host key.
func probeBind() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	sid := make([]byte, 32)
	if _, err := rand.Read(sid); err != nil {
		return nil, err
	}
	sig, err := signer.Sign(rand.Reader, sid)
	if err != nil {
		return nil, err
	}
	return ssh.Marshal(struct {
		HostKey   []byte
		SessionID []byte
		Signature []byte
		Forwarded bool
	}{signer.PublicKey().Marshal(), sid, ssh.Marshal(sig), false}), nil
}

// conn returns the link's connection to u, dialling it if needed.
func (l *upstreamLink) conn(u *upstream, timeout time.Duration) (*upstreamConn, error) {
	l.mu.Lock()
	c, closed := l.conns[u.socket], l.closed
	l.mu.Unlock()
	if closed {
		return nil, &upstreamError{socket: u.socket, kind: upstreamUnreachable, err: errClosing}
	}
	if c != nil {
		return c, nil
	}
	if err := u.mayConnect(l.set.now()); err != nil {
		return nil, err // the last failure, not a new one
	}
	nc, err := net.DialTimeout("unix", u.socket, timeout)
	if err != nil {
		ue := &upstreamError{socket: u.socket, kind: upstreamUnreachable, err: dialErrText(err)}
		u.failed(ue, false, l.set.now(), l.set.log)
		return nil, ue
	}
	rw := &upstreamRW{nc: nc}
	c = &upstreamConn{nc: nc, rw: rw, ag: sshagent.NewClient(rw)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		nc.Close()
		return nil, &upstreamError{socket: u.socket, kind: upstreamUnreachable, err: errClosing}
	}
	if l.conns == nil {
		l.conns = map[string]*upstreamConn{}
	}
	l.conns[u.socket] = c
	return c, nil
}

var errClosing = errors.New("the client's connection is closing")

// dialErrText drops the "dial unix PATH:" prefix: the socket is named
// already.
func dialErrText(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

func (l *upstreamLink) drop(socket string, c *upstreamConn) {
	l.mu.Lock()
	if l.conns[socket] == c {
		delete(l.conns, socket)
	}
	l.mu.Unlock()
	c.nc.Close()
}

func (l *upstreamLink) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// abort makes a request in flight return at once (the agent is
// stopping); close then releases the connections.
func (l *upstreamLink) abort() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, c := range l.conns {
		_ = c.nc.SetDeadline(time.Now())
	}
}

// close closes every upstream connection of the link.
func (l *upstreamLink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for s, c := range l.conns {
		c.nc.Close()
		delete(l.conns, s)
	}
}

// The agent's side: where the pipeline, the list and the management
// requests meet the upstreams. Upstream is only a different signer at the
// sign step (DESIGN.md: one pipeline).

// upstreamConfig is the upstream sockets (serve --upstream, then the
// policy's) and the timeout, as the policy in force says now.
func (s *Server) upstreamConfig() upstreamConfig {
	pol := s.policy()
	return upstreamConfig{sockets: mergeSockets(s.opts.Upstreams, pol.Upstreams()), timeout: pol.UpstreamTimeout()}
}

// startUpstreams sets up the upstream agents and checks each once, in the
// background: one that is missing is a warning in the log, never fatal.
func (s *Server) startUpstreams() {
	s.up = newUpstreamSet(s.upstreamConfig, s.log, s.now)
	if s.up.configured() {
		go s.up.checkAtStart()
	}
}

// upstreams is the connection's link to the upstream agents, made on
// first use; the server stopping interrupts a request in flight on it.
func (a *connAgent) upstreams() *upstreamLink {
	if a.up == nil {
		a.up = newUpstreamLink(a.srv.up)
		if a.conn != nil {
			context.AfterFunc(a.conn.ctx, a.up.abort)
		}
	}
	return a.up
}

// upstreamBind keeps a verified session-bind, as received, for replay to
// the upstream agents (kept even with none configured: a policy reload
// may add one, and an upstream must never see fewer binds than there were).
func (a *connAgent) upstreamBind(raw []byte) {
	a.upstreams().addBind(raw)
}

// closeUpstreams closes the connection's upstream connections.
func (a *connAgent) closeUpstreams() {
	if a.up != nil {
		a.up.close()
	}
}

// withUpstreamKeys is own followed by the upstream agents' keys, a key
// already in own (same public key blob) left out: the agent's own copy wins.
func (a *connAgent) withUpstreamKeys(own []*identity) []*identity {
	if !a.srv.up.configured() {
		return own
	}
	seen := make(map[string]bool, len(own))
	for _, id := range own {
		seen[id.Blob] = true
	}
	for _, id := range a.upstreams().list() {
		if !seen[id.Blob] {
			own = append(own, id)
		}
	}
	return own
}

// upstreamKey finds a key an upstream agent holds: among the keys the
// upstreams listed last, else by listing them again on this connection
// (a client may sign without listing first).
func (a *connAgent) upstreamKey(blob []byte) (*identity, bool) {
	if !a.srv.up.configured() {
		return nil, false
	}
	if id := a.srv.up.find(blob); id != nil {
		return id, true
	}
	a.upstreams().list()
	id := a.srv.up.find(blob)
	return id, id != nil
}

// stepSignUpstream is stepSign for a key an upstream agent holds: the
// request goes to it, on this connection's link, within upstream_timeout.
// Its refusal, its silence or its absence is a refusal by rule "upstream".
func (a *connAgent) stepSignUpstream(r *signRequest) error {
	sig, err := a.upstreams().sign(r.id, r.data, r.flags)
	if err != nil {
		return &refusal{"upstream", err.Error()}
	}
	r.sig = sig
	return nil
}

// removeUpstreamKey explains why a client cannot remove a key an
// upstream agent holds: adds, removes and locks stay with safe-agent's
// own keys (README: keys held by other agents).
func (a *connAgent) removeUpstreamKey(blob []byte) error {
	id, ok := a.upstreamKey(blob)
	if !ok {
		return nil
	}
	msg := fmt.Sprintf("key held by upstream %s, remove it there", id.Upstream)
	a.log.Warn("remove refused: "+msg, "fingerprint", id.Fingerprint, "comment", id.Comment, "process", a.peer.Chain)
	a.srv.auditEvent(audit.Record{Event: audit.EventRemove, Decision: audit.DecisionDenied, Key: auditKey(id), Client: a.auditClient(), Reason: msg})
	return errors.New(msg)
}

// upstreamStatus is each upstream agent's health, checked now.
func (s *Server) upstreamStatus() []UpstreamStatus { return s.up.status() }
