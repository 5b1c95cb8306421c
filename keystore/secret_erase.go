//go:build goexperiment.runtimesecret

package keystore

import "runtime/secret"

// SecretErasure reports whether this binary was built with
// GOEXPERIMENT=runtimesecret (see WithSecretErasure).
const SecretErasure = true

// WithSecretErasure runs f under runtime/secret.Do: the stack and registers
// f used are erased when it returns, and every heap object f allocated
// (heap copies of keys, big.Int temporaries, the expanded keys crypto/ed25519
// and crypto/ecdsa cache) is erased once the garbage collector frees it.
// Goroutines f starts are not covered. The agent can wrap its own handling
// of key material (parsing an added key) in it too.
func WithSecretErasure(f func()) { secret.Do(f) }
