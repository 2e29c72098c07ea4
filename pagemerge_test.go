package securer

import (
	"io/fs"
	"strings"
	"testing"
)

func TestPageMergeCheck(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no KSM", nil, "no KSM"},
		{"off", map[string]string{"run": "0"}, "off (run=0)"},
		{"on", map[string]string{"run": "1", "pages_to_scan": "1000", "sleep_millisecs": "20"}, "on (pages_to_scan 1000, sleep_millisecs 20)"},
		{"unmerging", map[string]string{"run": "2"}, "off (run=2)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := pageMergeCheck(func(name string) (string, error) {
				v, ok := tc.files[name]
				if !ok {
					return "", fs.ErrNotExist
				}
				return v, nil
			})
			if !c.OK || !strings.Contains(c.Detail, tc.want) {
				t.Fatalf("got %+v, want OK and a detail containing %q", c, tc.want)
			}
		})
	}
}
