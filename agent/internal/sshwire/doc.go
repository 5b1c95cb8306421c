// Package sshwire parses and checks the OpenSSH agent-protocol messages
// that decide where a signature may be used: session-bind@openssh.com
// (which hosts a connection passed through), the data to sign (a login, an
// SSHSIG or opaque bytes) and restrict-destination-v00@openssh.com (ssh-add
// -h). It is pure: no sockets, no keys held, no policy decisions beyond
// OpenSSH's own rules, so it can be tested and fuzzed on its own.
package sshwire
