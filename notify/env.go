package notify

import (
	"os"
	"path/filepath"
	"strings"
)

// Env is the environment a prompt program runs with: the graphical
// session's variables and the few others a program needs. Nothing else
// from the agent's environment (SSH_AUTH_SOCK, say) reaches the prompt.
type Env struct {
	Display               string // DISPLAY
	WaylandDisplay        string // WAYLAND_DISPLAY
	XAuthority            string // XAUTHORITY
	DBusSessionBusAddress string // DBUS_SESSION_BUS_ADDRESS
	XDGRuntimeDir         string // XDG_RUNTIME_DIR
	SSHAskpass            string // SSH_ASKPASS: the askpass program to use
	Path                  string // PATH: where prompt programs are looked up
	Home                  string // HOME
	Lang                  string // LANG
}

// envVars maps each variable name to its field.
var envVars = []struct {
	name  string
	field func(*Env) *string
}{
	{"DISPLAY", func(e *Env) *string { return &e.Display }},
	{"WAYLAND_DISPLAY", func(e *Env) *string { return &e.WaylandDisplay }},
	{"XAUTHORITY", func(e *Env) *string { return &e.XAuthority }},
	{"DBUS_SESSION_BUS_ADDRESS", func(e *Env) *string { return &e.DBusSessionBusAddress }},
	{"XDG_RUNTIME_DIR", func(e *Env) *string { return &e.XDGRuntimeDir }},
	{"SSH_ASKPASS", func(e *Env) *string { return &e.SSHAskpass }},
	{"PATH", func(e *Env) *string { return &e.Path }},
	{"HOME", func(e *Env) *string { return &e.Home }},
	{"LANG", func(e *Env) *string { return &e.Lang }},
}

// defaultPath is used to find and run programs when Env.Path is empty.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// EnvFromList picks the variables Env knows from a "NAME=value" list such
// as os.Environ() or a process's /proc/PID/environ split at NUL bytes.
// Later entries win, as in a real environment.
func EnvFromList(list []string) Env {
	var e Env
	for _, kv := range list {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		for _, v := range envVars {
			if v.name == name {
				*v.field(&e) = value
			}
		}
	}
	return e
}

// HasDisplay says whether a graphical session is named (X11 or Wayland).
func (e Env) HasDisplay() bool { return e.Display != "" || e.WaylandDisplay != "" }

// WithDisplayFrom returns e, or, when e names no display, e with the
// display variables (DISPLAY, WAYLAND_DISPLAY, XAUTHORITY,
// DBUS_SESSION_BUS_ADDRESS, XDG_RUNTIME_DIR) taken as one group from
// other — typically the requesting client's environment when the agent
// was started without one. SSH_ASKPASS and PATH are never taken from
// other: they choose the program that answers, and a client must not
// choose who answers its own question. Note that a client of the same
// user could still point DISPLAY at an X server it controls; use this
// only for clients you would trust with the display anyway.
func (e Env) WithDisplayFrom(other Env) Env {
	if e.HasDisplay() || !other.HasDisplay() {
		return e
	}
	e.Display = other.Display
	e.WaylandDisplay = other.WaylandDisplay
	e.XAuthority = other.XAuthority
	e.DBusSessionBusAddress = other.DBusSessionBusAddress
	e.XDGRuntimeDir = other.XDGRuntimeDir
	return e
}

// noBus is the session bus address that tells GLib and Qt programs there
// is none. Without any address a GTK prompt "autolaunches" a bus with
// dbus-launch, plus an accessibility bus, which outlive the prompt (they
// leave its process group) and stay until the display closes.
const noBus = "disabled:"

// list is the environment for a prompt program: the set variables, with
// PATH defaulted, plus extra.
func (e Env) list(extra ...string) []string {
	if e.Path == "" {
		e.Path = defaultPath
	}
	if e.DBusSessionBusAddress == "" && !e.userBus() {
		e.DBusSessionBusAddress = noBus
	}
	var out []string
	for _, v := range envVars {
		if s := *v.field(&e); s != "" {
			out = append(out, v.name+"="+s)
		}
	}
	return append(out, extra...)
}

// userBus says whether $XDG_RUNTIME_DIR/bus, where D-Bus clients look when
// no address is set, is a socket.
func (e Env) userBus() bool {
	if e.XDGRuntimeDir == "" {
		return false
	}
	fi, err := os.Stat(filepath.Join(e.XDGRuntimeDir, "bus"))
	return err == nil && fi.Mode().Type() == os.ModeSocket
}
