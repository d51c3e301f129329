package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/skewguard/skewguard/internal/skewproc"
)

// target is something the run kills with SIGKILL and starts again: a skewguard process, or a part
// of the stack.
type target interface {
	label() string
	kill() error
	start(ctx context.Context, timeout time.Duration) error
}

// stackPart is one part of the stack, killed and started by hack/stack.sh kill|start PART.
type stackPart struct {
	name    string
	stackSh string
	logDir  string
}

func (p *stackPart) label() string { return p.name }

func (p *stackPart) kill() error { return p.run(context.Background(), time.Minute, "kill") }

func (p *stackPart) start(ctx context.Context, timeout time.Duration) error {
	return p.run(ctx, timeout+30*time.Second, "start")
}

func (p *stackPart) run(ctx context.Context, timeout time.Duration, verb string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.stackSh, verb, p.name).CombinedOutput()
	if f, ferr := os.OpenFile(filepath.Join(p.logDir, "stack-parts.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		f.Write(out)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("%s %s %s: %w: %s", p.stackSh, verb, p.name, err, out)
	}
	return nil
}

// proc is one skewguard process (`skewguard api` or `skewguard worker`) that the run starts,
// kills with SIGKILL and starts again with the same settings.
type proc struct {
	name   string // api-1, worker-2, ...
	role   string // api or worker
	binary string
	env    []string
	addr   string // listen address: /readyz
	logDir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProc(name, role, binary, logDir string, env map[string]string) (*proc, error) {
	addr, e, err := skewproc.Environ(env)
	if err != nil {
		return nil, err
	}
	return &proc{name: name, role: role, binary: binary, env: e, addr: addr, logDir: logDir}, nil
}

// start runs the process (its output appended to <logDir>/<name>.log) and waits until /readyz
// answers 200, for at most timeout.
func (p *proc) start(ctx context.Context, timeout time.Duration) error {
	f, err := os.OpenFile(filepath.Join(p.logDir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "\n=== chaos: start %s (%s) at %s\n", p.name, p.role, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.binary, p.role)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready (see %s.log)", p.name, p.name)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s (see %s.log)", p.name, timeout, p.name)
		}
	}
}

func (p *proc) label() string { return p.name }

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + " is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-done
	return nil
}

// stop ends the process with SIGTERM (SIGKILL after 30 s).
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
