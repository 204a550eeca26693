package handshake

import (
	"fmt"

	"golang.org/x/sys/cpu"
)

// Cipher is a data-plane AEAD. Its numeric values are on the wire (docs/PROTOCOL.md).
type Cipher uint8

const (
	CipherNone             Cipher = 0 // no agreement: the responder refuses the offer
	CipherChaCha20Poly1305 Cipher = 1
	CipherAES256GCM        Cipher = 2
)

func (c Cipher) String() string {
	switch c {
	case CipherChaCha20Poly1305:
		return "chacha20poly1305"
	case CipherAES256GCM:
		return "aes256gcm"
	case CipherNone:
		return "none"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

// CipherPreference is the `cipher` config key.
type CipherPreference uint8

const (
	// CipherAuto offers ChaCha20-Poly1305 always and AES-256-GCM when the CPU
	// has AES instructions, and prefers AES-256-GCM when both sides have them.
	CipherAuto CipherPreference = iota
	PreferChaCha20Poly1305
	PreferAES256GCM
)

// ParseCipherPreference reads the config value: auto | chacha20poly1305 | aes256gcm.
func ParseCipherPreference(s string) (CipherPreference, error) {
	switch s {
	case "auto", "":
		return CipherAuto, nil
	case "chacha20poly1305":
		return PreferChaCha20Poly1305, nil
	case "aes256gcm":
		return PreferAES256GCM, nil
	}
	return 0, fmt.Errorf("cipher %q is not one of auto, chacha20poly1305, aes256gcm", s)
}

func (p CipherPreference) String() string {
	switch p {
	case PreferChaCha20Poly1305:
		return "chacha20poly1305"
	case PreferAES256GCM:
		return "aes256gcm"
	}
	return "auto"
}

// HasAESHardware reports whether this CPU has AES instructions with carry-less
// multiply, the condition under which AES-256-GCM is both fast and constant-time.
func HasAESHardware() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) || cpu.S390X.HasAES
}
