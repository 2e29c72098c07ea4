package rvalue

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// The R codec's fast paths for plain values (what most tool calls carry)
// must write and read exactly what its general paths do, and must take
// most plain values (else they are not fast paths).
func TestRFastPathsMatchGeneral(t *testing.T) {
	bin, err := exec.LookPath("Rscript")
	if err != nil {
		t.Fatalf("Rscript not found (install r-base-core and r-cran-jsonlite on the host): %v", err)
	}
	for _, seed := range []int{1, 2} {
		cmd := exec.Command(bin, "--vanilla", "testdata/fastpaths.R", valuesR, strconv.Itoa(seed))
		cmd.Env = append(os.Environ(), "LANG=C.UTF-8", "LC_ALL=C.UTF-8")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, out)
		}
		m := regexp.MustCompile(`checked (\d+) mismatches (\d+) fast (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("seed %d: no summary line:\n%s", seed, out)
		}
		checked, _ := strconv.Atoi(string(m[1]))
		mismatches, _ := strconv.Atoi(string(m[2]))
		fast, _ := strconv.Atoi(string(m[3]))
		if mismatches != 0 {
			t.Errorf("seed %d: %d mismatches:\n%s", seed, mismatches, out)
		}
		// About a third of the random values are plain enough.
		if checked < 4000 || fast < checked/4 {
			t.Errorf("seed %d: %s", seed, fmt.Sprintf("the fast paths took %d of %d values", fast, checked))
		}
		t.Logf("seed %d: %d values, %d through the fast paths, 0 mismatches", seed, checked, fast)
	}
}
