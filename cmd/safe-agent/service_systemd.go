package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// systemdService installs safe-agent as a pair of systemd user units.
type systemdService struct{ d serviceDeps }

func (s systemdService) name() string { return "systemd" }

// unitDir is where user units written by the user live:
// $XDG_CONFIG_HOME/systemd/user, or ~/.config/systemd/user.
func (s systemdService) unitDir() string {
	cfg := s.d.getenv("XDG_CONFIG_HOME")
	if cfg == "" || !filepath.IsAbs(cfg) {
		cfg = filepath.Join(s.d.home, ".config")
	}
	return filepath.Join(cfg, "systemd", "user")
}

// memlockSetting is LimitMEMLOCK=: 8M, or less when the user may not lock
// that much (raising the hard limit above it would make the unit fail to
// start).
func memlockSetting(hardMax uint64) string {
	const want = 8 << 20
	if hardMax >= want {
		return "8M"
	}
	return strconv.FormatUint(hardMax, 10)
}

// systemdQuote writes one ExecStart= word: % and $ are doubled (systemd
// expands specifiers and variables there), and a word with spaces,
// quotes or backslashes is double-quoted with C escapes.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func (s systemdService) files() ([]unitFile, error) {
	sock, err := renderUnit("safe-agent.socket", nil)
	if err != nil {
		return nil, err
	}
	svc, err := renderUnit("safe-agent.service", map[string]string{
		"ExecStart": systemdQuote(s.d.exe), "MemLock": memlockSetting(s.d.memlockMax),
	})
	if err != nil {
		return nil, err
	}
	dir := s.unitDir()
	return []unitFile{
		{Path: filepath.Join(dir, "safe-agent.socket"), Content: sock},
		{Path: filepath.Join(dir, "safe-agent.service"), Content: svc},
	}, nil
}

func (s systemdService) enableHint() string {
	return "systemctl --user daemon-reload && systemctl --user enable --now safe-agent.socket"
}

// systemctl runs `systemctl --user ARGS`.
func (s systemdService) systemctl(args ...string) (string, error) {
	return s.d.run("systemctl", append([]string{"--user"}, args...)...)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// reachable says whether a user systemd answers; why is the reason when not.
func (s systemdService) reachable() (ok bool, why string) {
	if _, err := s.d.look("systemctl"); err != nil {
		return false, "systemctl is not installed"
	}
	if out, err := s.systemctl("daemon-reload"); err != nil {
		why := firstLine(out)
		if why == "" {
			why = err.Error()
		}
		return false, "systemctl --user: " + why
	}
	return true, ""
}

func (s systemdService) enable(w io.Writer) error {
	ok, why := s.reachable()
	if !ok {
		fmt.Fprintf(w, "Enabling skipped: no user systemd to talk to (%s).\nThe units are written; from a login session, run:\n  %s\nor start the agent by hand with: safe-agent serve\n", why, s.enableHint())
		return nil
	}
	// systemd replaces whatever is at the socket path: an agent started
	// by hand there would lose its socket.
	sockActive := false
	if _, err := s.systemctl("is-active", "--quiet", "safe-agent.socket"); err == nil {
		sockActive = true
	}
	if !sockActive {
		if st, err := agentStatus(defaultSocket()); err == nil {
			fmt.Fprintf(w, "Note: an agent started by hand (pid %d) answers on %s; systemd takes that path over now. Stop it (kill %d) once you have checked that the new one works.\n", st.PID, defaultSocket(), st.PID)
		}
	}
	if out, err := s.systemctl("enable", "--now", "safe-agent.socket"); err != nil {
		return fmt.Errorf("systemctl --user enable --now safe-agent.socket: %v\n%s\nSee `journalctl --user -u safe-agent.socket`", err, strings.TrimSpace(out))
	}
	fmt.Fprintln(w, "Enabled and started safe-agent.socket: the agent starts on the first connection, now and after every login.")
	if _, err := s.systemctl("is-active", "--quiet", "safe-agent.service"); err == nil {
		fmt.Fprintln(w, "safe-agent.service is already running an earlier setup: restart it to use these files (`systemctl --user restart safe-agent.service`; keys added with ssh-add are dropped, stored keys load again).")
	}
	return nil
}

func (s systemdService) disable(w io.Writer) {
	if ok, why := s.reachable(); !ok {
		fmt.Fprintf(w, "Could not stop the units (%s); if they run, stop them with: systemctl --user disable --now safe-agent.socket safe-agent.service\n", why)
		return
	}
	if out, err := s.systemctl("disable", "--now", "safe-agent.socket", "safe-agent.service"); err != nil {
		fmt.Fprintf(w, "systemctl --user disable --now: %s\n", firstLine(out))
	} else {
		fmt.Fprintln(w, "Stopped and disabled safe-agent.socket and safe-agent.service.")
	}
}

func (s systemdService) forget() {
	if _, err := s.d.look("systemctl"); err == nil {
		_, _ = s.systemctl("daemon-reload")
	}
}

func (s systemdService) state(w io.Writer) {
	if _, err := s.d.look("systemctl"); err != nil {
		fmt.Fprintln(w, "systemd: systemctl is not installed")
		return
	}
	if out, err := s.systemctl("show-environment"); err != nil {
		fmt.Fprintf(w, "systemd: no user systemd to ask (%s)\n", orDash(firstLine(out)))
		return
	}
	for _, unit := range []string{"safe-agent.socket", "safe-agent.service"} {
		enabled, _ := s.systemctl("is-enabled", unit)
		active, _ := s.systemctl("is-active", unit)
		fmt.Fprintf(w, "%s: enabled: %s, active: %s\n", unit, orDash(firstLine(enabled)), orDash(firstLine(active)))
	}
}
