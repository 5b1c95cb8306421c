// Package test holds safe-agent's end-to-end tests: the real binary
// driven by the real OpenSSH tools (ssh, ssh-add, ssh-keygen, sshd on
// 127.0.0.1), a real Secret Service and real prompt windows.
package test
