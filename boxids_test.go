package securer

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/securer-runc/securer-runc/internal/uidrange"
	"github.com/securer-runc/securer-runc/spec"
)

// A box's spec maps its IDs onto the slot its layout gives it: in a pod's
// 65,536-ID namespace, 2048 IDs above the pod's own; on a host, 65,536
// from 100,000. The box's user outside is the slot's base + 1000.
func TestBoxIDMap(t *testing.T) {
	pod, err := uidrange.LayoutFor("0 100000 65536\n", "0 100000 65536\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name             string
		layout           uidrange.Layout
		slot             int
		hostID           uint32
		size             uint32
		hostUID, hostGID int
	}{
		{"host, slot 0", uidrange.Default(), 0, 100000, 65536, 101000, 101000},
		{"host, slot 3", uidrange.Default(), 3, 100000 + 3*65536, 65536, 100000 + 3*65536 + 1000, 100000 + 3*65536 + 1000},
		{"pod, slot 0", pod, 0, 8192, 2048, 9192, 9192},
		{"pod, last slot", pod, 26, 8192 + 26*2048, 2048, 8192 + 26*2048 + 1000, 8192 + 26*2048 + 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, uid, gid := boxIDMap(tc.layout, tc.slot)
			if uid != tc.hostUID || gid != tc.hostGID {
				t.Errorf("box user outside = %d:%d, want %d:%d", uid, gid, tc.hostUID, tc.hostGID)
			}
			sp, err := spec.Build(spec.Options{
				RootFS: "/r/rootfs", Args: []string{"/usr/bin/Rscript"}, UID: boxUID, GID: boxGID, UserNS: m,
				CgroupsPath: "/p/s", MemoryBytes: 64 << 20, Pids: 8, CPUs: 1, TmpBytes: 1 << 20, TmpInodes: 64,
				ShmBytes: 1 << 20, NoFile: 64, FileSizeBytes: 1 << 20,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: tc.hostID, Size: tc.size}}
			if !slices.Equal(sp.Linux.UIDMappings, want) || !slices.Equal(sp.Linux.GIDMappings, want) {
				t.Errorf("maps uid %v gid %v, want %v", sp.Linux.UIDMappings, sp.Linux.GIDMappings, want)
			}
			if last := uint64(tc.hostID) + uint64(tc.size); last > uint64(pod.Space.First+pod.Space.Count) && tc.layout.Small {
				t.Errorf("slot ends at %d, past the namespace's %v", last, pod.Space)
			}
		})
	}
}
