package agent

import (
	"fmt"
	"sync"
	"time"

	"github.com/safe-agent/safe-agent/notify"
)

// ruleRefusalMemory is the audit rule of a request refused because the
// person refused another on the same connection moments before.
const ruleRefusalMemory = "refusal_memory"

// refusalMemory is when the person last refused a prompt on one
// connection. When a login is refused, ssh offers its next key on the
// same connection at once: without this the person is asked again about
// the request they just refused, and a second prompt for the same thing
// is a second chance to click yes by mistake.
type refusalMemory struct {
	mu sync.Mutex
	at time.Time // zero: nothing refused on this connection yet
}

// note remembers a refusal at now.
func (m *refusalMemory) note(now time.Time) {
	m.mu.Lock()
	m.at = now
	m.mu.Unlock()
}

// check refuses when a refusal on this connection is younger than window
// (policy refusal_memory; 0 turns the memory off).
func (m *refusalMemory) check(now time.Time, window time.Duration) error {
	m.mu.Lock()
	at := m.at
	m.mu.Unlock()
	if window <= 0 || at.IsZero() {
		return nil
	}
	ago := now.Sub(at)
	if ago < 0 || ago >= window {
		return nil
	}
	return &refusal{ruleRefusalMemory, fmt.Sprintf(
		"you refused a request on this connection %ds ago: its further requests are refused without asking for %s (refusal_memory in the policy file)",
		int(ago.Seconds()), window)}
}

// refusedByPerson: the prompt was answered no, or nobody answered it in
// time. A prompt that could not be shown, or a client that hung up, is
// not the person's refusal and is not remembered.
func refusedByPerson(outcome string) bool {
	return outcome == string(notify.OutcomeNo) || outcome == string(notify.OutcomeTimeout)
}

// stepConfirmRemembering is stepConfirm behind the connection's memory of
// refusals: within refusal_memory of a refused prompt, every sign request
// on the connection, for any key, is refused at once (and audited as
// such by stepAudit, like any refusal).
func (a *connAgent) stepConfirmRemembering(r *signRequest) error {
	if err := a.refused.check(a.srv.now(), a.srv.policy().RefusalMemory()); err != nil {
		return err
	}
	err := a.stepConfirm(r)
	if err != nil && r.prompt != nil && refusedByPerson(r.prompt.Outcome) {
		a.refused.note(a.srv.now())
	}
	return err
}
