package securer

import (
	"bytes"
	"math"
	"testing"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// toolResultFrame writes exactly what bridge.Encode writes for the same
// ToolResult: R reads both.
func TestToolResultFrameMatchesEncode(t *testing.T) {
	values := []any{
		nil, 1.5, math.Copysign(0, -1), math.Inf(1), 42, int64(1) << 40, "text with \"quotes\" and \n", true,
		[]float64{1, 2, 3}, []string{"a", "é"}, map[string]any{"x": 1, "y": []any{"a", nil}},
	}
	for _, id := range []uint64{0, 1, 100000, math.MaxUint64} {
		for _, g := range values {
			v, err := rvalue.FromGo(g)
			if err != nil {
				t.Fatalf("FromGo(%#v): %v", g, err)
			}
			b, err := v.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			want, err := bridge.Encode(bridge.ToolResult{Type: "tool_result", ID: id, Value: &v})
			if err != nil {
				t.Fatal(err)
			}
			if got := toolResultFrame(id, b); !bytes.Equal(got, want) {
				t.Errorf("id %d value %#v:\n got %s\nwant %s", id, g, got, want)
			}
		}
	}
}
