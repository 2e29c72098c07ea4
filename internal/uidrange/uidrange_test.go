package uidrange

import "testing"

func TestClaimTarget(t *testing.T) {
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/run/securer-runc/sessions/securer-0123456789abcdef", true},
		{"/run/x/sessions/securer-a", true},
		{"run/securer-runc/sessions/securer-a", false},
		{"/run/securer-runc/sessions/other", false},
		{"/run/securer-runc/containers/securer-a", false},
		{"/run/securer-runc/sessions/../sessions/securer-a", false},
	} {
		if got := claimTarget(tc.target); got != tc.ok {
			t.Errorf("claimTarget(%q) = %v, want %v", tc.target, got, tc.ok)
		}
	}
}
