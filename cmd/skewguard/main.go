// Command skewguard is the skew-protection control plane: one binary whose subcommands run the
// HTTP API, the Temporal worker, or both, migrate the registry, and act on versions.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/skewguard/skewguard/workflows"
)

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{
	"version":     {"print the version and exit", runVersion},
	"migrate":     {"apply the registry's database migrations and exit", runMigrate},
	"serve":       {"run the HTTP API and the Temporal worker in one process", runServe},
	"api":         {"run the HTTP API only", runAPI},
	"worker":      {"run the Temporal worker only", runWorker},
	"healthcheck": {"exit 0 when this container's skewguard answers /readyz (for image health checks)", runHealthcheck},
	// Operator commands over the REST API (SKEWGUARD_URL, SKEWGUARD_TOKEN).
	"versions":  {"list an app's versions: versions <namespace>/<app> [--state draining] [--limit N --offset M]", runVersions},
	"plan":      {"print a version's pending plan (advise mode) for kubectl apply: plan <namespace>/<app> <version> [-o yaml|json]", runPlan},
	"policy":    {"show an app's policy overrides and the values that apply: policy <namespace>/<app>", runPolicy},
	"audit":     {"show an audit trail: audit <namespace>/<app> [<version>]", runAudit},
	"expire":    {"expire versions now: expire <namespace>/<app> <version>... [--reason R]", runExpire},
	"promote":   {"make a Draining version Active again: promote <namespace>/<app> <version>", actionCommand(workflows.UpdatePromote)},
	"approve":   {"make a Staged version Active: approve <namespace>/<app> <version>", actionCommand(workflows.UpdateApprove)},
	"reject":    {"expire a Staged version: reject <namespace>/<app> <version>", actionCommand(workflows.UpdateReject)},
	"threshold": {"expire live versions older than an age: threshold <namespace>/<app> --older-than 2h", runThreshold},
	"ui":        {"serve the versions panel on 127.0.0.1 with your credentials (kubeconfig or --token), like kubectl proxy", runUI},
}

// usageError is reported with the usage text and exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "skewguard: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "skewguard %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: skewguard <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nConfiguration is read from the environment; see README.md.")
}
