//go:build cgo

package pkcs11key

import "github.com/miekg/pkcs11"

// tokenCalls are the PKCS#11 calls a running Key makes on its token:
// *pkcs11.Ctx, or in the tests a wrapper around it that can make a call
// hang as a wedged token does (worker.go says why that matters). Module
// set-up and tear-down (C_Initialize, C_Finalize: module.go) and
// C_GenerateKeyPair go to *pkcs11.Ctx directly.
type tokenCalls interface {
	GetSlotList(tokenPresent bool) ([]uint, error)
	GetTokenInfo(slotID uint) (pkcs11.TokenInfo, error)
	OpenSession(slotID uint, flags uint) (pkcs11.SessionHandle, error)
	CloseSession(sh pkcs11.SessionHandle) error
	Login(sh pkcs11.SessionHandle, userType uint, pin string) error
	FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error
	FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error)
	FindObjectsFinal(sh pkcs11.SessionHandle) error
	GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error)
	DeriveKey(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, basekey pkcs11.ObjectHandle, a []*pkcs11.Attribute) (pkcs11.ObjectHandle, error)
	DestroyObject(sh pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error
}

var _ tokenCalls = (*pkcs11.Ctx)(nil)
