package securer

import (
	"fmt"
	"os"
	"strings"
)

// ksmDir is where the kernel shows its same-page merging (KSM) settings.
const ksmDir = "/sys/kernel/mm/ksm"

// PageMergeCheck reports whether this host's kernel merges pages
// (Host.UnsafeMergePages saves memory only where it does). It never
// fails: without KSM the option is ineffective, not unsafe, so the check
// says so and how to change it. Turning KSM on is the operator's choice:
// the library never writes these settings.
func PageMergeCheck() HostCheck {
	return pageMergeCheck(func(name string) (string, error) {
		b, err := os.ReadFile(ksmDir + "/" + name)
		return strings.TrimSpace(string(b)), err
	})
}

func pageMergeCheck(read func(name string) (string, error)) HostCheck {
	c := HostCheck{Name: "page merging (KSM)", OK: true}
	run, err := read("run")
	switch {
	case os.IsNotExist(err):
		c.Detail = "this kernel has no KSM (CONFIG_KSM): --unsafe-merge-pages would save nothing"
	case err != nil:
		c.Detail = fmt.Sprintf("cannot read %s/run: %v", ksmDir, err)
	case run == "1":
		scan, _ := read("pages_to_scan")
		sleep, _ := read("sleep_millisecs")
		c.Detail = fmt.Sprintf("on (pages_to_scan %s, sleep_millisecs %s): with --unsafe-merge-pages idle boxes share their start-up memory", scan, sleep)
	default:
		c.Detail = fmt.Sprintf("off (run=%s): --unsafe-merge-pages would save nothing until KSM runs "+
			"(echo 1 > %s/run; pages_to_scan 1000 merges 50 idle boxes in ~40 s for ~10%% of a core)", run, ksmDir)
	}
	return c
}
