// Package e2e holds the end-to-end tests: the skewguard binary, run as a user runs it, against the real
// stack (kube-apiserver with controllers and kwok, pods launched as real processes, Traefik routing by the
// HTTPRoutes skewguard writes, Temporal, PostgreSQL, Prometheus). The tests build with the integration tag.
package e2e
