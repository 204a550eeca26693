//go:build !amd64

package tundev

const haveAVX2 = false

const maxAVX2Chunk = 1 << 20

func sumWordsAVX2(b []byte) uint64            { panic("tundev: no AVX2 here") }
func copySumWordsAVX2(dst, src []byte) uint64 { panic("tundev: no AVX2 here") }
