//go:build unix && !linux

package keystore

// adviseSecret: there is no MADV_DONTDUMP outside Linux; Harden disables
// core files instead.
func adviseSecret(b []byte) error { return nil }
