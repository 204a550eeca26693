package tundev

import "testing"

func TestCheckWritePlan(t *testing.T) {
	burst := [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), tcpSeg(2, nil)}
	if err := CheckWritePlan(burst, false); err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{tcpSeg(0, nil), tcpSeg(1, nil), tcpSeg(2, nil)}
	bad[1][len(bad[1])-1] ^= 1
	if err := CheckWritePlan(bad, true); err != nil {
		t.Fatal(err)
	}
}
