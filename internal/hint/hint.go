// Package hint carries a fix-it hint beside an error, so that error messages
// stay short and lower-case while the advice ("run safe-agent unlock") reaches
// the person at the top, where main prints it on its own line.
package hint

import (
	"errors"
	"slices"
)

// Hinter is an error that knows what the user can do about it.
type Hinter interface {
	error
	Hint() string
}

type hinted struct {
	err  error
	hint string
}

func (e *hinted) Error() string { return e.err.Error() }
func (e *hinted) Unwrap() error { return e.err }
func (e *hinted) Hint() string  { return e.hint }

// Wrap returns err with hint attached; a nil err stays nil.
func Wrap(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &hinted{err: err, hint: hint}
}

// New is errors.New with a hint.
func New(msg, hint string) error { return Wrap(errors.New(msg), hint) }

// Of returns the outermost hint in err's chain, or "".
func Of(err error) string {
	var h Hinter
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// All returns every hint in err's chain, innermost first: what the
// library that failed advises (the cause), then the advice of each layer
// above it (often a way around it).
func All(err error) []string {
	var out []string
	for err != nil {
		var h Hinter
		if !errors.As(err, &h) {
			break
		}
		if s := h.Hint(); s != "" {
			out = append(out, s)
		}
		err = errors.Unwrap(h)
	}
	slices.Reverse(out)
	return out
}
