package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ErrUnknownKind is a document whose apiVersion and kind this package
// has no type for.
var ErrUnknownKind = errors.New("unknown apiVersion/kind")

// Object is one decoded manifest document.
type Object struct {
	Index int // the document's position in its file, from 0
	Kind  string
	// *corev1.Pod, *appsv1.Deployment, *nodev1.RuntimeClass,
	// *autoscalingv2.HorizontalPodAutoscaler or *corev1.ConfigMap
	Value any
}

// docSeparator is a YAML document separator line.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// SplitDocuments splits a multi-document YAML file; documents holding
// only comments or blanks are dropped.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		if hasContent([]byte(d)) {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return true
		}
	}
	return false
}

// Decode decodes every document of a manifest file strictly: a field the
// API type does not have, a duplicate field or a kind outside Pod,
// Deployment, RuntimeClass, HorizontalPodAutoscaler (autoscaling/v2) and
// ConfigMap is an error.
func Decode(data []byte) ([]Object, error) {
	var objs []Object
	for i, doc := range SplitDocuments(data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var v any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Pod":
			v = &corev1.Pod{}
		case "apps/v1 Deployment":
			v = &appsv1.Deployment{}
		case "node.k8s.io/v1 RuntimeClass":
			v = &nodev1.RuntimeClass{}
		case "autoscaling/v2 HorizontalPodAutoscaler":
			v = &autoscalingv2.HorizontalPodAutoscaler{}
		case "v1 ConfigMap":
			v = &corev1.ConfigMap{}
		default:
			return nil, fmt.Errorf("document %d: %w %q %q", i, ErrUnknownKind, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		objs = append(objs, Object{Index: i, Kind: tm.Kind, Value: v})
	}
	return objs, nil
}

// PodSpec is the pod an object runs.
func (o Object) PodSpec() *corev1.PodSpec {
	switch v := o.Value.(type) {
	case *corev1.Pod:
		return &v.Spec
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec
	}
	return nil
}

// PodAnnotations are the annotations of the pod an object runs.
func (o Object) PodAnnotations() map[string]string {
	switch v := o.Value.(type) {
	case *corev1.Pod:
		return v.Annotations
	case *appsv1.Deployment:
		return v.Spec.Template.Annotations
	}
	return nil
}
