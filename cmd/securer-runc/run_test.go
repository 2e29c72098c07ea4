package main

import "testing"

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{defaultOutputLimit, 10 << 20, false},
		{"0", 0, false},
		{"none", 0, false},
		{"None", 0, false},
		{"512K", 512 << 10, false},
		{"1G", 1 << 30, false},
		{"-1", 0, true},
		{"lots", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseLimit(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseLimit(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
