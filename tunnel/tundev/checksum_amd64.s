#include "textflag.h"

// REDUCE_LANES widens the 16 dword lanes of Y3 and Y4 (Y15 zero) to
// qwords, adds them all into AX and leaves the upper halves clean.
#define REDUCE_LANES \
	VPUNPCKLDQ Y15, Y3, Y0 \
	VPUNPCKHDQ Y15, Y3, Y1 \
	VPUNPCKLDQ Y15, Y4, Y2 \
	VPUNPCKHDQ Y15, Y4, Y5 \
	VPADDQ Y0, Y1, Y0 \
	VPADDQ Y2, Y5, Y2 \
	VPADDQ Y0, Y2, Y0 \
	VEXTRACTI128 $1, Y0, X1 \
	VPADDQ X0, X1, X0 \
	VPSRLDQ $8, X0, X1 \
	VPADDQ X0, X1, X0 \
	VMOVQ X0, AX \
	VZEROUPPER

// func sumWordsAVX2(b []byte) uint64
// Sums the little-endian 16-bit words of b; len(b) is a multiple of 32 and
// at most maxAVX2Chunk, so no 32-bit lane can overflow.
TEXT ·sumWordsAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	VPXOR Y15, Y15, Y15
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	SHRQ $5, CX
	JZ   reduce
loop:
	VMOVDQU (SI), Y0
	VPUNPCKLWD Y15, Y0, Y1
	VPUNPCKHWD Y15, Y0, Y2
	VPADDD Y1, Y3, Y3
	VPADDD Y2, Y4, Y4
	ADDQ $32, SI
	DECQ CX
	JNZ  loop

reduce:
	REDUCE_LANES
	MOVQ AX, ret+24(FP)
	RET

// func copySumWordsAVX2(dst, src []byte) uint64
// Copies src to dst and sums src's little-endian 16-bit words; len(src) is
// a multiple of 32, at most maxAVX2Chunk, and len(dst) >= len(src).
TEXT ·copySumWordsAVX2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	VPXOR Y15, Y15, Y15
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	SHRQ $5, CX
	JZ   reduce2
loop2:
	VMOVDQU (SI), Y0
	VMOVDQU Y0, (DI)
	VPUNPCKLWD Y15, Y0, Y1
	VPUNPCKHWD Y15, Y0, Y2
	VPADDD Y1, Y3, Y3
	VPADDD Y2, Y4, Y4
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop2
reduce2:
	REDUCE_LANES
	MOVQ AX, ret+48(FP)
	RET

