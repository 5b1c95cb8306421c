// Package keystore is where keys rest (the OS keyring) and how they are held
// while loaded (locked memory). Of safe-agent it imports only internal/hint.
//
// Open returns a store by name (Names lists them); the
// Vault (vault*.go) holds loaded keys.
//
// # Held: the Vault
//
// The in-memory vault is its own file group: vault.go (mappings and
// slots), vault_key.go (LockedKey: sealing, signing, destroying),
// vault_linux.go and vault_darwin.go (what each kernel can advise about
// key pages), secret_*.go (WithSecretErasure).
//
// A Vault owns anonymous mappings of key memory: each is mlock'ed (never
// swapped), MADV_DONTDUMP (left out of core dumps), MADV_WIPEONFORK (zero in
// a forked child) and has a PROT_NONE guard page on both sides. Keys get
// 64-byte-aligned slots in it (ed25519: 64 bytes; ECDSA: the scalar; RSA: D,
// P, Q, Dp, Dq, Qinv — 1,792 bytes for RSA-4096); the first 16 KiB mapping
// holds 256 ed25519 keys and more are mapped on demand. Slots are wiped when
// a key is destroyed and everything is wiped and unmapped by Close.
//
// NewVault locks its first mapping at once, so a RLIMIT_MEMLOCK that is too
// low is reported when the agent starts, with the limit and the fixes
// (`ulimit -l`, LimitMEMLOCK= in the systemd unit, or
// --allow-unlocked-memory, which is VaultOptions.AllowUnlocked). mlockall is
// not an option: Go reserves over a gigabyte of address space.
//
// Seal copies a key into the vault and wipes the caller's copy. Signing
// rebuilds the key on the heap for the one signature and wipes it after:
// crypto/ed25519 (like crypto/ecdsa) caches the expanded key through a weak
// pointer to the key slice, and a weak pointer into non-Go memory kills the
// process ("getWeakHandle on invalid pointer"), so the key must be a heap
// copy while the signature is made.
//
// # Why our own mappings and not github.com/awnumar/memguard
//
// A Vault slot costs a signature little more than a plain heap key
// (BenchmarkSign* in this package). memguard's Enclave, the feature that
// would justify it (keys sealed while idle), costs several times a whole
// agent request per signature; a kept-open LockedBuffer costs as much as a
// slot but uses a locked page plus two guard pages per key, and when mlock
// fails it panics after wiping every buffer, losing every loaded key. The
// Vault returns an error and packs keys into one mapping. Keys are not
// additionally encrypted while idle (as OpenSSH's key shielding does).
//
// # What remains outside locked memory
//
// Go's crypto packages make copies the Vault cannot reach: the expanded key
// crypto/ed25519 and crypto/ecdsa cache per heap key, crypto/rsa's internal
// key and big.Int temporaries, x/crypto's PEM decoding buffer when a stored
// key is parsed. They become garbage when the call returns, but the garbage
// collector does not zero freed memory. Every path here that touches key
// material runs inside WithSecretErasure; built with
// GOEXPERIMENT=runtimesecret (linux/amd64 and arm64) that is
// runtime/secret.Do, which erases those objects when they are freed;
// without it a copy of the key is left per signature until the allocator
// reuses that memory (TestSeedCopiesOutsideVault scans for them). Build
// the agent with GOEXPERIMENT=runtimesecret.
//
// # At rest: the keyring
//
// Keyring stores keys through github.com/zalando/go-keyring (Secret
// Service on Linux, Keychain on macOS): one item per key (service
// "safe-agent", account the SHA256 fingerprint) holding JSON with the
// unencrypted OpenSSH PEM and the key's Settings, and an "index" item
// listing the fingerprints, because go-keyring cannot enumerate. Writes go
// item first, index last; deletes index first: a crash in between leaves an
// unlisted item, never a listed key without its item. Values over 2 KiB
// (RSA-4096 keys; macOS and Windows keychains cap items near that) are
// split into chunk items named after their content's hash, so rewriting a
// key never damages the copy in use. Every keyring call runs under a
// deadline, because go-keyring waits forever on an unlock prompt. Errors
// that mean "not now" (no session bus, no Secret Service, locked, no
// answer) wrap ErrUnavailable and say what to do. NewMemory is the "none"
// store: nothing persists.
//
// go-keyring passes values as Go strings, which cannot be wiped: each Put
// and Load leaves the item text (base64 of JSON holding the base64 PEM —
// never raw key bytes) in strings, go-keyring's byte copies and godbus
// buffers, garbage once the call returns. Our decodings of that text are
// wiped. The Secret Service "plain" session sends it unencrypted over the
// session bus, as for every go-keyring user.
//
// Harden makes the process non-dumpable and disables core files, as
// OpenSSH's ssh-agent does. ParsePrivateKeyFile and MarshalPrivateKey read
// key files for `safe-agent add` and write the stored form.
package keystore
