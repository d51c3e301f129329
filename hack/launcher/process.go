package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// spec is everything that decides how a pod's process runs; a change restarts it.
type spec struct {
	uid     string
	ip      netip.Addr
	port    int
	program string
	env     map[string]string
	prog    Program
}

func (s spec) sameAs(o spec) bool {
	if s.uid != o.uid || s.ip != o.ip || s.port != o.port || s.program != o.program || len(s.env) != len(o.env) {
		return false
	}
	for k, v := range s.env {
		if o.env[k] != v {
			return false
		}
	}
	return true
}

// podProc supervises one pod's process: start it, wait for its port, report readiness, restart it
// with backoff when it exits, and stop it when cancelled.
type podProc struct {
	key    string // namespace/name
	spec   spec
	cancel context.CancelFunc
	done   chan struct{}
	pid    int // current process group, 0 when none; guarded by launcher.mu
}

// hooks are the side effects a podProc needs from the launcher.
type hooks struct {
	setReady    func(ctx context.Context, key string, ready bool, reason string)
	token       func(ctx context.Context, key string) (string, error)
	started     func(p *podProc, pid int)
	exited      func(p *podProc)
	logDir      string
	killTimeout time.Duration
}

func (p *podProc) run(ctx context.Context, h hooks) {
	defer close(p.done)
	backoff := time.Second
	for ctx.Err() == nil {
		err := p.runOnce(ctx, h)
		if ctx.Err() != nil {
			return
		}
		slog.Warn("pod process ended; restarting", "pod", p.key, "err", err, "in", backoff)
		h.setReady(context.WithoutCancel(ctx), p.key, false, "ProcessExited")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runOnce runs the process until it exits or ctx is cancelled (then it is stopped).
func (p *podProc) runOnce(ctx context.Context, h hooks) error {
	env := p.spec.env
	if p.spec.prog.ServiceAccountToken {
		tok, err := h.token(ctx, p.key)
		if err != nil {
			return fmt.Errorf("service account token: %w", err)
		}
		file := filepath.Join(h.logDir, fileName(p.key)+".token")
		if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
			return fmt.Errorf("write token: %w", err)
		}
		env = with(env, map[string]string{"PLT_TEST_TOKEN": tok, "SKEWGUARD_TOKEN_FILE": file})
	}
	cmd := buildCommand(p.spec, env)
	logFile, err := os.OpenFile(filepath.Join(h.logDir, fileName(p.key)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open pod log: %w", err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "--- %s launcher: starting %q for pod %s on %s:%d\n",
		time.Now().Format(time.RFC3339), p.spec.program, p.key, p.spec.ip, p.spec.port)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %v: %w", cmd.Args, err)
	}
	pid := cmd.Process.Pid
	h.started(p, pid)
	defer h.exited(p)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	slog.Info("started pod process", "pod", p.key, "program", p.spec.program, "pid", pid, "addr", addr(p.spec))

	timeout := p.spec.prog.StartTimeout.Duration
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	select {
	case err := <-exited:
		return fmt.Errorf("exited before serving: %v", err)
	case <-ctx.Done():
		return stopGroup(pid, exited, h.killTimeout)
	case err := <-waitForPort(ctx, addr(p.spec), timeout):
		if err != nil {
			_ = stopGroup(pid, exited, h.killTimeout)
			return err
		}
	}
	slog.Info("pod process serving", "pod", p.key, "addr", addr(p.spec))
	h.setReady(ctx, p.key, true, "")
	select {
	case err := <-exited:
		return fmt.Errorf("exited: %v", err)
	case <-ctx.Done():
		return stopGroup(pid, exited, h.killTimeout)
	}
}

func addr(s spec) string { return net.JoinHostPort(s.ip.String(), strconv.Itoa(s.port)) }

func fileName(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}

func with(env, extra map[string]string) map[string]string {
	out := make(map[string]string, len(env)+len(extra))
	for k, v := range env {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// buildCommand makes the process: its own process group (so stopping it stops its children),
// and its own UTS namespace with the pod's hostname when the program asks for one.
func buildCommand(s spec, env map[string]string) *exec.Cmd {
	args := s.prog.Command
	if s.prog.PodHostname {
		podName := env["POD_NAME"]
		args = append([]string{"unshare", "--uts", "--", "/bin/sh", "-c", `hostname "$0" && exec "$@"`, podName}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = baseEnv()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd
}

// baseEnv passes the few host variables a program needs, not the launcher's whole environment.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// waitForPort reports nil once address accepts a TCP connection, or an error at the timeout.
func waitForPort(ctx context.Context, address string, timeout time.Duration) <-chan error {
	out := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(timeout)
		for {
			d := net.Dialer{Timeout: 500 * time.Millisecond}
			c, err := d.DialContext(ctx, "tcp", address)
			if err == nil {
				c.Close()
				out <- nil
				return
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				out <- fmt.Errorf("%s did not answer within %s: %w", address, timeout, err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return out
}

// stopGroup sends SIGTERM to the process group, then SIGKILL after the timeout.
func stopGroup(pid int, exited <-chan error, timeout time.Duration) error {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	// Children that ignored SIGTERM but outlived the leader still hold the group.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill process group %d: %w", pid, err)
	}
	return nil
}
