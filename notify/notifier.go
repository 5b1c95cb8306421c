package notify

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gen2brain/beeep"
)

// Notifier tells the person something. Notify never blocks on the
// desktop: a slow or missing notification daemon must not delay a
// signature.
type Notifier interface {
	Notify(title, body string)
}

// Notification modes (the policy's notify setting). Each includes the
// ones before it: never ⊂ forwarded ⊂ denied ⊂ always.
const (
	NotifyNever     = "never"     // nothing
	NotifyForwarded = "forwarded" // every use through a forwarded agent, allowed or refused
	NotifyDenied    = "denied"    // every refusal, and every forwarded use (the default)
	NotifyAlways    = "always"    // every use
)

// ShouldNotify says whether a decision is worth a notification under
// mode: denied is whether the request was refused, forwarded whether it
// came through a forwarded agent. An unknown or empty mode is treated as
// the default, "denied".
func ShouldNotify(mode string, denied, forwarded bool) bool {
	switch mode {
	case NotifyNever:
		return false
	case NotifyForwarded:
		return forwarded
	case NotifyAlways:
		return true
	}
	return denied || forwarded
}

// queueSize is how many notifications may wait; more drop the oldest.
const queueSize = 32

// closeWait bounds how long Close waits for notifications in flight.
const closeWait = 2 * time.Second

// DesktopNotifier sends desktop notifications from a goroutine of its own,
// through github.com/gen2brain/beeep (D-Bus org.freedesktop.Notifications,
// then notify-send; on macOS osascript).
//
// The session bus: beeep cannot be given a bus address; it uses the
// agent's own DBUS_SESSION_BUS_ADDRESS (or $XDG_RUNTIME_DIR/bus). When
// neither exists notifications are skipped rather than letting the D-Bus
// library start a bus of its own with dbus-launch (which would leave
// daemons behind). An agent started by systemd --user normally has the
// address; otherwise run `systemctl --user import-environment
// DBUS_SESSION_BUS_ADDRESS`.
type DesktopNotifier struct {
	mode string
	log  *slog.Logger
	send func(title, body string) error

	mu     sync.Mutex
	queue  []note
	closed bool
	wake   chan struct{} // one pending wake-up for the worker
	done   chan struct{} // closed when the worker exits
}

type note struct{ title, body string }

// NewNotifier returns a running notifier for mode (see ShouldNotify); with
// mode "never" it drops everything and starts nothing. Close it when done.
func NewNotifier(mode string, log *slog.Logger) (*DesktopNotifier, error) {
	return newNotifier(mode, log, sendDesktop)
}

func newNotifier(mode string, log *slog.Logger, send func(title, body string) error) (*DesktopNotifier, error) {
	switch mode {
	case NotifyNever, NotifyForwarded, NotifyDenied, NotifyAlways:
	case "":
		mode = NotifyDenied
	default:
		return nil, fmt.Errorf("notify %q: use never, denied, forwarded or always", mode)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &DesktopNotifier{mode: mode, log: log, send: send, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if mode == NotifyNever {
		close(n.done)
		return n, nil
	}
	go n.work()
	return n, nil
}

// Mode is the notifier's mode, for ShouldNotify.
func (n *DesktopNotifier) Mode() string { return n.mode }

// Notify queues a notification and returns at once. When the queue is
// full the oldest waiting notification is dropped (and logged).
func (n *DesktopNotifier) Notify(title, body string) {
	if n.mode == NotifyNever {
		return
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.log.Debug("notifier closed; notification dropped", "title", title)
		return
	}
	if len(n.queue) >= queueSize {
		n.log.Warn("notification queue full; dropped the oldest", "title", n.queue[0].title)
		n.queue = n.queue[1:]
	}
	n.queue = append(n.queue, note{title, body})
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *DesktopNotifier) work() {
	defer close(n.done)
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			closed := n.closed
			n.mu.Unlock()
			if closed {
				return
			}
			<-n.wake
			continue
		}
		m := n.queue[0]
		n.queue = n.queue[1:]
		n.mu.Unlock()
		if err := n.send(m.title, m.body); err != nil {
			n.log.Debug("desktop notification not shown", "title", m.title, "err", err)
		}
	}
}

// Close stops taking notifications, lets the queued ones go out, and
// waits for that at most a couple of seconds.
func (n *DesktopNotifier) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	select {
	case <-n.done:
	case <-time.After(closeWait):
		n.log.Debug("notifier closed with notifications still in flight")
	}
}

// appName is set once: beeep keeps it in a package variable.
var appName sync.Once

// sendDesktop shows one notification with beeep. title and body are plain
// text, and most of the body came from clients (user and host names, key
// comments, process names).
//
// The body of a desktop notification is Pango markup wherever the server
// has the "body-markup" capability (dunst, GNOME Shell, Plasma, mako,
// xfce4-notifyd): unescaped, a user name "<b>…</b>" or "</span>…" would
// restyle or break the text around it. So the body is escaped for markup
// whenever the server may read it as markup. safe-agent writes no markup
// of its own. The title (summary) is plain text by the specification, and
// servers show it as typed (dunst and GNOME escape it themselves), so it
// is left alone: escaping it would show "&amp;".
func sendDesktop(title, body string) error {
	if !sessionBusKnown() {
		return errors.New("no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is unset; run `systemctl --user import-environment DBUS_SESSION_BUS_ADDRESS`")
	}
	if bodyMarkup() {
		body = escapeMarkup(body)
	}
	appName.Do(func() { beeep.AppName = "safe-agent" })
	return beeep.Notify(title, body, "")
}

// markupEscaper escapes the three characters that markup reads: Pango
// (and the HTML subset of Plasma) then shows the text as typed. Quotes
// need no escape outside attributes, and GNOME Shell shows some entities
// for them (&#39;) literally.
var markupEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeMarkup makes plain text s safe as a notification body.
func escapeMarkup(s string) string { return markupEscaper.Replace(s) }
