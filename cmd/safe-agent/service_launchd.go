package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// launchdLabel names safe-agent's launchd agent.
const launchdLabel = "com.github.safe-agent"

// launchdService installs safe-agent as a launchd agent (macOS). launchd
// starts it at login and again when it fails; the agent creates its own
// socket (launchd's socket passing is not LISTEN_FDS).
type launchdService struct{ d serviceDeps }

func (s launchdService) name() string { return "launchd" }

func (s launchdService) plistPath() string {
	return filepath.Join(s.d.home, "Library", "LaunchAgents", launchdLabel+".plist")
}

func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s launchdService) files() ([]unitFile, error) {
	b, err := renderUnit("com.github.safe-agent.plist", map[string]string{
		"Label":  xmlText(launchdLabel),
		"Exe":    xmlText(s.d.exe),
		"Socket": xmlText(defaultSocket()),
		"Log":    xmlText(filepath.Join(s.d.home, "Library", "Logs", "safe-agent.log")),
	})
	if err != nil {
		return nil, err
	}
	return []unitFile{{Path: s.plistPath(), Content: b}}, nil
}

func (s launchdService) domain() string { return fmt.Sprintf("gui/%d", s.d.uid) }

func (s launchdService) enableHint() string {
	return fmt.Sprintf("launchctl bootstrap %s %s", s.domain(), s.plistPath())
}

func (s launchdService) enable(w io.Writer) error {
	if _, err := s.d.look("launchctl"); err != nil {
		fmt.Fprintf(w, "Enabling skipped: launchctl is not available. Later, run:\n  %s\n", s.enableHint())
		return nil
	}
	// bootstrap fails on a loaded label: unload the old one first.
	_, _ = s.d.run("launchctl", "bootout", s.domain()+"/"+launchdLabel)
	if out, err := s.d.run("launchctl", "bootstrap", s.domain(), s.plistPath()); err != nil {
		return fmt.Errorf("%s: %v\n%s", s.enableHint(), err, strings.TrimSpace(out))
	}
	fmt.Fprintf(w, "Loaded %s: the agent runs now and at every login.\n", launchdLabel)
	return nil
}

func (s launchdService) disable(w io.Writer) {
	if _, err := s.d.look("launchctl"); err != nil {
		return
	}
	if out, err := s.d.run("launchctl", "bootout", s.domain()+"/"+launchdLabel); err != nil {
		fmt.Fprintf(w, "launchctl bootout: %s\n", firstLine(out))
	} else {
		fmt.Fprintf(w, "Unloaded %s.\n", launchdLabel)
	}
}

func (s launchdService) forget() {}

func (s launchdService) state(w io.Writer) {
	if _, err := s.d.look("launchctl"); err != nil {
		fmt.Fprintln(w, "launchd: launchctl is not available")
		return
	}
	if _, err := s.d.run("launchctl", "print", s.domain()+"/"+launchdLabel); err != nil {
		fmt.Fprintf(w, "%s: not loaded\n", launchdLabel)
		return
	}
	fmt.Fprintf(w, "%s: loaded\n", launchdLabel)
}
