// Package notify is how safe-agent talks to the person at the desktop:
// asking (confirmation prompts) and telling (desktop notifications). It
// knows nothing about the agent, the policy or keys beyond the text it is
// given.
//
// Asking. A Confirmer shows one yes/no question with an external program
// (an SSH_ASKPASS program, zenity, kdialog or osascript) and kills it at the
// context's deadline; only an explicit yes is a yes. An Asker sits in front
// of a Confirmer and is what the agent calls for each request: it shows one
// prompt at a time, lets identical requests that wait together share one
// prompt, remembers a yes for a while, and stops asking about a key and
// path that the person keeps refusing (prompt fatigue).
//
// Telling. A Notifier sends desktop notifications without ever blocking the
// caller; ShouldNotify says which decisions deserve one.
//
// The graphical session. An agent started by systemd or from a login shell
// often lacks DISPLAY and friends. Nothing here reads the process
// environment for prompts: the caller passes an Env. Run
//
//	systemctl --user import-environment DISPLAY WAYLAND_DISPLAY XAUTHORITY
//
// from the desktop session (most desktops do this at login) so that a
// systemd-started agent gets them.
package notify
