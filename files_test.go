package securer

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckFileName(t *testing.T) {
	long := strings.Repeat("a", 255)
	cases := []struct {
		name string
		ok   bool
	}{
		{"out.csv", true},
		{"a/b/c/d.txt", true},
		{"A-b_c.9", true},
		{long, true},
		{long + "/" + long + "/" + long + "/" + long, true}, // 1023 bytes: the total limit holds by construction
		{"", false},
		{"../x", false},
		{"a/../x", false},
		{".", false},
		{"a/./b", false},
		{"/etc/passwd", false},
		{"a//b", false},
		{"a/", false},
		{"a/b/c/d/e", false},
		{long + "a", false},
		{"sp ace", false},
		{"x\n", false},
		{"caf\u00e9", false},
		{"a\\b", false},
	}
	for _, c := range cases {
		err := CheckFileName(c.name)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrFileRefused)) {
			t.Errorf("CheckFileName(%q) = %v, want ok %v", truncate(c.name, 40), err, c.ok)
		}
	}
}

func TestCheckFiles(t *testing.T) {
	many := make([]File, MaxRequestFiles+1)
	for i := range many {
		many[i] = File{Name: "f" + strings.Repeat("x", i), Data: []byte("1")}
	}
	cases := []struct {
		what  string
		files []File
		err   string
	}{
		{"none", nil, ""},
		{"one", []File{{Name: "a", Data: []byte("x")}}, ""},
		{"at the count", many[:MaxRequestFiles], ""},
		{"over the count", many, "at most 16"},
		{"file at the limit", []File{{Name: "a", Data: make([]byte, MaxFileBytes)}}, ""},
		{"file over", []File{{Name: "a", Data: make([]byte, MaxFileBytes+1)}}, "limit per file"},
		{"request over", []File{{Name: "a", Data: make([]byte, MaxFileBytes)}, {Name: "b", Data: make([]byte, MaxRequestBytes-MaxFileBytes+1)}}, "limit per request"},
		{"twice", []File{{Name: "a"}, {Name: "a"}}, "twice"},
		{"bad name", []File{{Name: "../a"}}, "not . or .."},
	}
	for _, c := range cases {
		err := CheckFiles(c.files)
		if c.err == "" && err != nil || c.err != "" && (!errors.Is(err, ErrFileRefused) || !strings.Contains(fmtErr(err), c.err)) {
			t.Errorf("%s: %v, want %q", c.what, err, c.err)
		}
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
