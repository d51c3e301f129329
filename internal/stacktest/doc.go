// Package stacktest holds the smoke tests of the real local stack that `make stack-up` starts
// (hack/stack.sh): one test per part that uses it for real. They carry the integration build tag
// and find the stack through internal/testenv, so they fail, never skip, when it is missing.
package stacktest
