package main

import (
	"strings"
	"testing"
)

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
		// These used to mean "no limit" silently.
		{"0.5", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"1e30", 0, true},
	}
	for _, tt := range tests {
		got, err := parseLimit(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseLimit(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// Sizes that overflowed int64 became a file-size rlimit of 2^63, which the
// kernel reads as a negative offset: every write in the box failed.
func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string // "" for none
	}{
		{"65536", 65536, ""},
		{" 512M ", 512 << 20, ""},
		{"1g", 1 << 30, ""},
		{"1.5K", 1536, ""},
		{"1e3", 1000, ""},
		{"4611686018427387903", 1<<62 - 1, ""},
		{"4294967295G", 4294967295 << 30, ""},
		{"0", 0, "positive"},
		{"-5M", 0, "positive"},
		{"0.5", 0, "whole number"},
		{"0.3K", 0, "whole number"},
		{"NaN", 0, "positive"},
		{"nan", 0, "positive"},
		{"Inf", 0, "positive"},
		{"+Inf", 0, "positive"},
		{"-Inf", 0, "positive"},
		{"1e19", 0, "over"},
		{"9223372036854775807", 0, "over"},
		{"99999999999999999999", 0, "over"},
		{"4611686018427387904", 0, "over"},
		{"4294967296G", 0, "over"},
		{"1e30", 0, "over"},
		{"", 0, "positive"},
		{"M", 0, "positive"},
		{"12Q", 0, "positive"},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		switch {
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseBytes(%q) = %d, %v; want an error saying %q", tt.in, got, err, tt.wantErr)
		}
	}
}
