package notify

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The client's tmux is found through /proc: its controlling terminal and
// parent from /proc/PID/stat, $TMUX from /proc/PID/environ.

// maxAncestors bounds the walk from the client up its parents.
const maxAncestors = 16

// FindTmux finds the tmux of a local client process: $TMUX and
// $TMUX_PANE of the client or its nearest ancestor that has them. The
// client itself must have a controlling terminal (a background job of a
// service has none, and must not get a popup on somebody's screen), and
// the socket must be a socket of this user.
func FindTmux(pid int) (*TmuxTarget, error) {
	return findTmux("/proc", pid, os.Geteuid())
}

func findTmux(proc string, pid, uid int) (*TmuxTarget, error) {
	st, err := readStat(proc, pid)
	if err != nil {
		return nil, fmt.Errorf("client process %d: %w", pid, err)
	}
	if st.ttyNr == 0 {
		return nil, fmt.Errorf("%w: it has no controlling terminal", ErrNoTmux)
	}
	for i, p := 0, pid; i <= maxAncestors && p > 1; i++ {
		if t := tmuxFromEnviron(proc, p); t != nil {
			if err := checkTmuxSocket(t.Socket, uid); err != nil {
				return nil, err
			}
			return t, nil
		}
		s, err := readStat(proc, p)
		if err != nil {
			break
		}
		p = s.ppid
	}
	return nil, fmt.Errorf("%w: no TMUX in the environment of process %d or its parents", ErrNoTmux, pid)
}

type procStat struct{ ppid, ttyNr int }

// readStat reads the parent and tty_nr fields of /proc/PID/stat.
func readStat(proc string, pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// "pid (comm) state ppid pgrp session tty_nr ...": comm may hold
	// spaces and parentheses, so fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 5 {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	tty, err2 := strconv.Atoi(f[4])
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return procStat{ppid: ppid, ttyNr: tty}, nil
}

// tmuxFromEnviron parses TMUX ("socket,server-pid,session") and
// TMUX_PANE from /proc/PID/environ; nil when TMUX is unset or malformed.
func tmuxFromEnviron(proc string, pid int) *TmuxTarget {
	b, err := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "environ"))
	if err != nil {
		return nil
	}
	var tmux, pane string
	for _, kv := range strings.Split(string(b), "\x00") {
		switch name, value, _ := strings.Cut(kv, "="); name {
		case "TMUX":
			tmux = value
		case "TMUX_PANE":
			pane = value
		}
	}
	// The socket path may itself hold commas: the last two fields are
	// the server pid and the session number.
	parts := strings.Split(tmux, ",")
	if len(parts) < 3 {
		return nil
	}
	session := parts[len(parts)-1]
	sock := strings.Join(parts[:len(parts)-2], ",")
	if !filepath.IsAbs(sock) || !allDigits(session) {
		return nil
	}
	if pane != "" && (!strings.HasPrefix(pane, "%") || !allDigits(pane[1:])) {
		pane = ""
	}
	return &TmuxTarget{Socket: sock, Session: "$" + session, Pane: pane, PID: pid}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// checkTmuxSocket: the client's environment names the socket, so make
// sure it is a socket of this user before the agent talks to it.
func checkTmuxSocket(path string, uid int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("tmux socket from the client's TMUX: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != fs.ModeSocket || !ok || int(st.Uid) != uid {
		return fmt.Errorf("tmux socket %s from the client's TMUX is not a socket of uid %d", path, uid)
	}
	return nil
}

// flushInput discards what was typed into the terminal but not read yet.
func flushInput(in *os.File) {
	_ = unix.IoctlSetInt(int(in.Fd()), unix.TCFLSH, unix.TCIFLUSH)
}
