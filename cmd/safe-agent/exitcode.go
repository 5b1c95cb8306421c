package main

import "errors"

// exitCodeError ends the program with a given status and optional message.
type exitCodeError struct {
	code int
	msg  string
}

func (e exitCodeError) Error() string { return e.msg }

func asExitCode(err error, target *exitCodeError) bool { return errors.As(err, target) }
