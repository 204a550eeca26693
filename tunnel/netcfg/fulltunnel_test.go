package netcfg

import (
	"net/netip"
	"slices"
	"testing"
)

func TestSplitDefaults(t *testing.T) {
	in := []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("198.19.0.0/24"),
		netip.MustParsePrefix("::/0"), netip.MustParsePrefix("fd00::/8"),
	}
	rest, v4, v6 := SplitDefaults(in)
	if !v4 || !v6 || !slices.Equal(rest, []netip.Prefix{in[1], in[3]}) {
		t.Fatalf("SplitDefaults = %v %v %v", rest, v4, v6)
	}
	rest, v4, v6 = SplitDefaults(in[1:2])
	if v4 || v6 || len(rest) != 1 {
		t.Fatalf("no defaults: SplitDefaults = %v %v %v", rest, v4, v6)
	}
}
