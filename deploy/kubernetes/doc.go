// Package kubernetes holds the Kubernetes manifests of the securer-runc
// sidecar (the *.yaml files beside it) and the test that decodes each of
// them strictly into the Kubernetes API types and checks the sidecar's
// recipe: shared socket, privileges per mode, probes, termination grace,
// the metrics port, the resources the capacity model (CAPACITY.md)
// asks for, and the autoscaler and prometheus-adapter rule driven by the
// server's own capacity gauge. It is its own Go module so that k8s.io/api
// stays out of the engine's dependencies.
package kubernetes
