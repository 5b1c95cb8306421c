package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/safe-agent/safe-agent/agent/audit"
	"github.com/safe-agent/safe-agent/policy"
)

// safe-agent's own protocol extensions, used by its CLI. They are served
// on local connections only: never through a forwarded agent.
const (
	// ExtKeySettings is a key constraint carrying the key's own settings
	// (safe-agent add --allow/--deny/--max-forward-depth) as JSON.
	ExtKeySettings = "key-settings-v0@safe-agent"
	// ExtList returns the loaded keys with their settings as JSON.
	ExtList = "list-v0@safe-agent"
	// ExtStatus returns the agent's status as JSON.
	ExtStatus = "status-v0@safe-agent"
	// ExtForget clears every remembered confirmation.
	ExtForget = "forget-v0@safe-agent"
)

// KeySettingsConstraint is the payload of ExtKeySettings.
type KeySettingsConstraint struct {
	Allow           []string `json:"allow,omitempty"`
	Deny            []string `json:"deny,omitempty"`
	MaxForwardDepth *int     `json:"max_forward_depth,omitempty"`
	Stored          bool     `json:"stored,omitempty"`
}

// KeyInfo describes a loaded key for `safe-agent list` and `status`.
type KeyInfo struct {
	Fingerprint     string    `json:"fingerprint"`
	Type            string    `json:"type"`
	Comment         string    `json:"comment"`
	PublicKey       string    `json:"public_key"`
	Certificate     bool      `json:"certificate,omitempty"`
	Confirm         bool      `json:"confirm,omitempty"`
	Expires         time.Time `json:"expires,omitzero"`
	Stored          bool      `json:"stored,omitempty"`
	Allow           []string  `json:"allow,omitempty"`
	Deny            []string  `json:"deny,omitempty"`
	MaxForwardDepth *int      `json:"max_forward_depth,omitempty"`
	Restricted      string    `json:"ssh_add_h,omitempty"`
	Cert            *CertInfo `json:"certificate_info,omitempty"`
}

// CertInfo describes a user certificate held in the agent.
type CertInfo struct {
	KeyID         string    `json:"key_id"`
	Principals    []string  `json:"principals"`
	CAFingerprint string    `json:"ca_fingerprint"`
	ValidAfter    time.Time `json:"valid_after,omitzero"`
	ValidBefore   time.Time `json:"valid_before,omitzero"` // zero: forever
}

// CertInfoOf describes a user certificate as the agent reports it.
func CertInfoOf(c *ssh.Certificate) *CertInfo {
	ci := &CertInfo{KeyID: c.KeyId, Principals: append([]string{}, c.ValidPrincipals...), CAFingerprint: ssh.FingerprintSHA256(c.SignatureKey)}
	if c.ValidAfter != 0 {
		ci.ValidAfter = certTime(c.ValidAfter)
	}
	if c.ValidBefore != ssh.CertTimeInfinity {
		ci.ValidBefore = certTime(c.ValidBefore)
	}
	return ci
}

// Status is the agent's state for `safe-agent status`.
type Status struct {
	PID          int       `json:"pid"`
	Started      time.Time `json:"started"`
	Socket       string    `json:"socket,omitempty"`
	Keystore     string    `json:"keystore,omitempty"`
	MemoryLocked bool      `json:"memory_locked"`
	Locked       bool      `json:"locked"`
	Policy       string    `json:"policy,omitempty"`
	PolicyError  string    `json:"policy_error,omitempty"`
	AuditLog     string    `json:"audit_log,omitempty"`
	Keys         []KeyInfo `json:"keys"`
	Notes        []string  `json:"notes,omitempty"`
	// UnboundClients are programs that asked for login signatures
	// without sending session-bind@openssh.com (OpenSSH before 8.9, Go's
	// x/crypto ssh, Paramiko, PuTTY…). If such a program forwards the
	// agent, requests from the far side look local: destination rules
	// cannot hold for them.
	UnboundClients []UnboundClient `json:"unbound_clients,omitempty"`
	// RestrictedKeys counts the loaded keys with an allow list (the
	// policy's or their own).
	RestrictedKeys int `json:"restricted_keys,omitempty"`
	PromptStatus
}

// UnboundClient is one program that signed logins without a session-bind.
type UnboundClient struct {
	Exe      string    `json:"exe"`
	Process  string    `json:"process"` // the last process chain seen
	Logins   int       `json:"logins"`
	LastSeen time.Time `json:"last_seen"`
}

// StatusInfo is what the agent cannot know by itself, given by `serve`.
type StatusInfo struct {
	Socket       string
	Keystore     string
	MemoryLocked bool
	AuditLog     string
	// Notes returns current remarks (e.g. "keyring locked: stored keys not loaded").
	Notes func() []string
}

func parseKeySettings(details []byte) (KeySettingsConstraint, error) {
	var ks KeySettingsConstraint
	if err := json.Unmarshal(details, &ks); err != nil {
		return ks, fmt.Errorf("key settings: %w", err)
	}
	if ks.MaxForwardDepth != nil && *ks.MaxForwardDepth < 0 {
		return ks, errors.New("key settings: max_forward_depth must be 0 or more")
	}
	if err := policy.CheckSettings(policy.Settings{Allow: ks.Allow, Deny: ks.Deny, MaxForwardDepth: ks.MaxForwardDepth}); err != nil {
		return ks, fmt.Errorf("key settings: %w", err)
	}
	return ks, nil
}

func (s *Server) keyInfo(id *Identity) KeyInfo {
	_, cert := id.Public.(*ssh.Certificate)
	ki := KeyInfo{
		Fingerprint: id.Fingerprint, Type: id.Type(), Comment: id.Comment,
		PublicKey:   string(ssh.MarshalAuthorizedKey(id.Public)),
		Certificate: cert, Confirm: id.Confirm, Expires: id.Expires, Stored: id.Stored,
		Allow: id.Settings.Allow, Deny: id.Settings.Deny, MaxForwardDepth: id.Settings.MaxForwardDepth,
	}
	if len(ki.PublicKey) > 0 && ki.PublicKey[len(ki.PublicKey)-1] == '\n' {
		ki.PublicKey = ki.PublicKey[:len(ki.PublicKey)-1]
	}
	if id.Dest != nil {
		ki.Restricted = id.Dest.String()
	}
	if c := id.Cert(); c != nil {
		ki.Cert = CertInfoOf(c)
	}
	return ki
}

// Status reports the agent's state.
func (s *Server) Status() Status {
	st := Status{PID: os.Getpid(), Started: s.started, Locked: s.isLocked(), Keys: []KeyInfo{}}
	info := s.opts.Info
	st.Socket, st.Keystore, st.MemoryLocked, st.AuditLog = info.Socket, info.Keystore, info.MemoryLocked, info.AuditLog
	if info.Notes != nil {
		st.Notes = info.Notes()
	}
	if s.opts.Policy != nil {
		st.Policy = s.opts.Policy.Path()
		if err := s.opts.Policy.LastError(); err != nil {
			st.PolicyError = err.Error()
		}
	}
	if !st.Locked {
		pol := s.policy()
		for _, id := range s.keys.list(s.now()) {
			st.Keys = append(st.Keys, s.keyInfo(id))
			if pol.HasAllowList(policyKey(id, nil), policySettings(id)) {
				st.RestrictedKeys++
			}
		}
	}
	st.UnboundClients = s.unbound.list()
	return st
}

// manage serves safe-agent's own extensions.
func (a *connAgent) manage(name string) ([]byte, error) {
	if !a.bind.Local() {
		a.log.Warn("management request refused on a forwarded or unbound connection", "extension", name, "process", a.peer.Chain)
		return nil, errors.New("refused: not a local connection")
	}
	var v any
	switch name {
	case ExtList:
		if a.srv.isLocked() {
			return nil, errLocked
		}
		infos := []KeyInfo{}
		for _, id := range a.srv.keys.list(a.srv.now()) {
			infos = append(infos, a.srv.keyInfo(id))
		}
		v = infos
	case ExtStatus:
		v = a.statusFor()
	case ExtForget:
		n := a.srv.forget()
		a.log.Info("remembered confirmations cleared", "count", n)
		v = map[string]int{"forgotten": n}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// An extension reply is a whole message: SSH_AGENT_SUCCESS, then ours.
	return append([]byte{agentSuccess}, b...), nil
}

const agentSuccess = 6

// KeyOptions are the settings a key is loaded with outside the agent
// protocol (keys from the keystore at start).
type KeyOptions struct {
	Confirm         bool
	Allow, Deny     []string
	MaxForwardDepth *int
	Lifetime        time.Duration
	Stored          bool
}

// AddKey loads a held key into the agent, e.g. one read from the keystore
// at start. The key is destroyed if it cannot be added.
func (s *Server) AddKey(k PrivateKey, comment string, o KeyOptions) (KeyInfo, error) {
	if err := policy.CheckSettings(policy.Settings{Allow: o.Allow, Deny: o.Deny, MaxForwardDepth: o.MaxForwardDepth}); err != nil {
		k.Destroy()
		return KeyInfo{}, fmt.Errorf("stored settings: %w", err)
	}
	pub := k.PublicKey()
	now := s.now()
	id := &Identity{
		Public: pub, Blob: string(pub.Marshal()), Comment: comment, Fingerprint: ssh.FingerprintSHA256(pub),
		Confirm: o.Confirm, Stored: o.Stored, Added: now, key: k,
		Settings: IdentitySettings{Allow: o.Allow, Deny: o.Deny, MaxForwardDepth: o.MaxForwardDepth},
	}
	if o.Lifetime > 0 {
		id.Expires = now.Add(o.Lifetime)
	} else if s.opts.DefaultLifetime > 0 {
		id.Expires = now.Add(s.opts.DefaultLifetime)
	}
	s.keys.add(id)
	s.auditEvent(audit.Record{Event: "add", Decision: "allowed", Key: auditKey(id), Detail: fmt.Sprintf("from keystore; confirm %v", id.Confirm)})
	return s.keyInfo(id), nil
}
