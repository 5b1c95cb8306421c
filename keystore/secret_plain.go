//go:build !goexperiment.runtimesecret

package keystore

// SecretErasure reports whether this binary was built with
// GOEXPERIMENT=runtimesecret (see WithSecretErasure).
const SecretErasure = false

// WithSecretErasure runs f. In a binary built with
// GOEXPERIMENT=runtimesecret it runs f under runtime/secret.Do, which erases
// the stack and registers f used when it returns and every heap object f
// allocated once the garbage collector frees it. The agent can wrap its own
// handling of key material (parsing an added key) in it too.
func WithSecretErasure(f func()) { f() }
