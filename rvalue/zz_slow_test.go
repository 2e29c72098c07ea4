package rvalue

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestZZSlow(t *testing.T) {
	dir := os.Getenv("FUZZDIR")
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.SplitN(string(b), "\n", 2)
		s := strings.TrimSpace(lines[1])
		s = strings.TrimPrefix(s, "[]byte(")
		s = strings.TrimSuffix(s, ")")
		data, err := strconv.Unquote(s)
		if err != nil {
			continue
		}
		start := time.Now()
		v, err := Decode([]byte(data), DecodeOptions{MaxElements: 1 << 16})
		d1 := time.Since(start)
		if err == nil {
			_, _ = v.MarshalJSON()
			_ = v.Go()
			_, _ = v.PlainJSON()
		}
		if d := time.Since(start); d > 20*time.Millisecond {
			t.Logf("%s: %v (decode %v) %.200q", filepath.Base(f), d, d1, data)
		}
	}
}
