package securer

import (
	"bytes"
	"context"
	"errors"
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

// A declared argument cannot be named like R's own argument passing: the
// tool's R function could not take it.
func TestToolArgNamesR(t *testing.T) {
	for name, ok := range map[string]bool{"x": true, ".x": true, "..x": true, "...x": true, "..": true,
		"...": false, "..1": false, "..12": false} {
		tool := Tool{Name: "t", Args: []Arg{{Name: name}}, Handler: func(context.Context, map[string]Value) (any, error) { return nil, nil }}
		err := tool.validate()
		if (err == nil) != ok {
			t.Errorf("argument %q: validate() = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("argument %q: %v is not ErrInvalidConfig", name, err)
		}
	}
}
