package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A stack part is killed and started by hack/stack.sh kill|start PART; a failure carries its output.
func TestStackPart(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "stack.sh")
	calls := filepath.Join(dir, "calls")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 $2\" >>"+calls+"\n[ \"$1\" = start ] && { echo 'traefik: not healthy'; exit 1; }\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &stackPart{name: "traefik", stackSh: script, logDir: dir}
	if err := p.kill(); err != nil {
		t.Fatalf("kill: %v", err)
	}
	err := p.start(context.Background(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "traefik: not healthy") {
		t.Fatalf("start = %v, want the script's failure and output", err)
	}
	got, _ := os.ReadFile(calls)
	if string(got) != "kill traefik\nstart traefik\n" {
		t.Errorf("calls = %q", got)
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "stack-parts.log")); !strings.Contains(string(log), "not healthy") {
		t.Errorf("stack-parts.log = %q", log)
	}
}

func TestFaultKind(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "killed api-1": "skewguard", "killed api-1+worker-2": "skewguard",
		"killed traefik+api-2": "traefik+skewguard", "killed postgresql": "postgresql",
	} {
		if got := faultKind(in); got != want {
			t.Errorf("faultKind(%q) = %q, want %q", in, got, want)
		}
	}
}
