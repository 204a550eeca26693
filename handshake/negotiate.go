package handshake

import (
	"fmt"
	"strings"
)

// cipherSet is the wire bitmask of ciphers: offerChaCha20Poly1305 | offerAES256GCM.
// Unknown bits are ignored, so a later version can add ciphers.
type cipherSet uint8

// localCipherSet is what this host offers (initiator) and accepts (responder):
// auto is ChaCha20-Poly1305 plus AES-256-GCM when the CPU has AES instructions
// (software AES is slow and not constant-time); an explicit choice is only that one.
func localCipherSet(p CipherPreference, aesHW bool) cipherSet {
	switch p {
	case PreferChaCha20Poly1305:
		return offerChaCha20Poly1305
	case PreferAES256GCM:
		return offerAES256GCM
	}
	if aesHW {
		return offerChaCha20Poly1305 | offerAES256GCM
	}
	return offerChaCha20Poly1305
}

// chooseCipher is the responder's pick from the initiator's offer: the one
// cipher both accept, and when both accept both, AES-256-GCM if this host has
// AES hardware (auto only includes AES then, so: AES whenever both accept it).
func chooseCipher(accept, offered cipherSet) Cipher {
	both := accept & offered
	switch {
	case both&offerAES256GCM != 0:
		return CipherAES256GCM
	case both&offerChaCha20Poly1305 != 0:
		return CipherChaCha20Poly1305
	}
	return CipherNone
}

func (s cipherSet) has(c Cipher) bool {
	switch c {
	case CipherChaCha20Poly1305:
		return s&offerChaCha20Poly1305 != 0
	case CipherAES256GCM:
		return s&offerAES256GCM != 0
	}
	return false
}

func (s cipherSet) String() string {
	var names []string
	if s&offerChaCha20Poly1305 != 0 {
		names = append(names, CipherChaCha20Poly1305.String())
	}
	if s&offerAES256GCM != 0 {
		names = append(names, CipherAES256GCM.String())
	}
	if unknown := s &^ (offerChaCha20Poly1305 | offerAES256GCM); unknown != 0 {
		names = append(names, fmt.Sprintf("unknown(%#02x)", uint8(unknown)))
	}
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, " or ")
}
