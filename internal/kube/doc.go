// Package kube owns skewguard's writes to, and direct reads from, the Kubernetes API: building
// the typed clients from configuration (client.go), fenced writes of an app's HTTPRoutes
// (routewriter.go), and the readiness, scale-down and deletion of versions' workloads
// (workloads.go). Every write is safe to repeat.
package kube
