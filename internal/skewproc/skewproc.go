// Package skewproc runs skewguard as a child process for the tools that measure or break a whole
// control plane (cmd/chaos, cmd/lifecycles): it builds the binary and gives each process its own
// listen address on 127.0.0.1.
package skewproc

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// Build compiles cmd/skewguard into dir and returns the binary's path; the compiler's output goes
// to stderr.
func Build(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	binary := filepath.Join(dir, "skewguard")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "github.com/skewguard/skewguard/cmd/skewguard")
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build skewguard: %w", err)
	}
	return binary, nil
}

// Environ returns our environment with env added and PLT_SKEW_LISTEN_ADDRESS set to a free port of
// 127.0.0.1, and that address (where the process answers /readyz).
func Environ(env map[string]string) (addr string, environ []string, err error) {
	addr, err = FreeAddr()
	if err != nil {
		return "", nil, err
	}
	environ = os.Environ()
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	return addr, append(environ, "PLT_SKEW_LISTEN_ADDRESS="+addr), nil
}

// FreeAddr returns an address of 127.0.0.1 with a port nobody listens on at the moment.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
