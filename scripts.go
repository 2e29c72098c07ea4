package securer

import _ "embed"

//go:embed scripts/build-rootfs.sh
var buildRootfsScript string // a string: no caller can change it

// BuildRootfsScript returns scripts/build-rootfs.sh, embedded so that the
// installed binary can build its rootfs without the source tree.
func BuildRootfsScript() []byte { return []byte(buildRootfsScript) }
