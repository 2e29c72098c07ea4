module github.com/securer-runc/securer-runc/deploy/kubernetes

go 1.26.8

require (
	go.yaml.in/yaml/v2 v2.4.4 // indirect
	k8s.io/api v0.37.2 // indirect
	sigs.k8s.io/yaml v1.6.0 // indirect
)
