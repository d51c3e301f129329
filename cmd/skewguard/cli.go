package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skewguard/skewguard/api"
	"github.com/skewguard/skewguard/internal/buildinfo"
	"github.com/skewguard/skewguard/internal/registry"
	"github.com/skewguard/skewguard/workflows"
)

// The operator commands talk to a running skewguard's REST API (/api/v1). The server comes from
// --server or SKEWGUARD_URL, the bearer token from --token or SKEWGUARD_TOKEN (any token the
// Kubernetes API server accepts, e.g. `kubectl create token`); RBAC on versions.skewguard.dev
// decides what it may do.
const (
	envServer     = "SKEWGUARD_URL"
	envToken      = "SKEWGUARD_TOKEN"
	defaultServer = "http://127.0.0.1:8080"
)

// cliFlags are the flags every operator command has.
type cliFlags struct {
	fs      *flag.FlagSet
	server  *string
	token   *string
	output  *string
	timeout *time.Duration
	// outputs are the -o values the command accepts (nil: table and json).
	outputs []string
}

func newCLIFlags(name string) *cliFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	f := &cliFlags{fs: fs}
	f.server = fs.String("server", envOr(envServer, defaultServer), "skewguard API address (env "+envServer+")")
	f.token = fs.String("token", os.Getenv(envToken), "bearer token (env "+envToken+")")
	f.output = fs.String("o", "table", "output: table or json")
	f.timeout = fs.Duration("timeout", 60*time.Second, "give up after this long")
	return f
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parseApp parses the flags of a command whose one argument is <namespace>/<app>.
func (f *cliFlags) parseApp(args []string, usage string) (registry.AppRef, error) {
	pos, err := f.parse(args, usage)
	if err != nil {
		return registry.AppRef{}, err
	}
	if len(pos) != 1 {
		return registry.AppRef{}, usageError{msg: "usage: skewguard " + usage}
	}
	return parseApp(pos[0])
}

// parseVersion parses the flags of a command whose two arguments are <namespace>/<app> <version>.
func (f *cliFlags) parseVersion(args []string, usage string) (registry.VersionRef, error) {
	pos, err := f.parse(args, usage)
	if err != nil {
		return registry.VersionRef{}, err
	}
	if len(pos) != 2 {
		return registry.VersionRef{}, usageError{msg: "usage: skewguard " + usage}
	}
	app, err := parseApp(pos[0])
	if err != nil {
		return registry.VersionRef{}, err
	}
	return registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: pos[1]}, nil
}

// parse parses flags anywhere among the arguments (`expire shop/web 3 --reason x` works) and
// returns the positional ones.
func (f *cliFlags) parse(args []string, usage string) ([]string, error) {
	var positional []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, usageError{msg: fmt.Sprintf("%s: %v\nusage: skewguard %s", f.fs.Name(), err, usage)}
		}
		args = f.fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	outputs := f.outputs
	if outputs == nil {
		outputs = []string{"table", "json"}
	}
	if !slices.Contains(outputs, *f.output) {
		return nil, usageError{msg: fmt.Sprintf("%s: -o must be %s, got %q", f.fs.Name(), strings.Join(outputs, " or "), *f.output)}
	}
	return positional, nil
}

func (f *cliFlags) client() *api.Client {
	return &api.Client{
		BaseURL:   *f.server,
		Token:     *f.token,
		HTTP:      &http.Client{Timeout: *f.timeout},
		UserAgent: "skewguard-cli/" + buildinfo.Version,
	}
}

// parseApp reads "namespace/app".
func parseApp(s string) (registry.AppRef, error) {
	ns, app, ok := strings.Cut(s, "/")
	if !ok || ns == "" || app == "" || strings.Contains(app, "/") {
		return registry.AppRef{}, usageError{msg: fmt.Sprintf("%q is not <namespace>/<app>", s)}
	}
	return registry.AppRef{Namespace: ns, Name: app}, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runVersions: skewguard versions <namespace>/<app> [--state S[,S]] [--limit N] [--offset M]
func runVersions(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "versions <namespace>/<app> [--state draining[,staged...]] [--limit N] [--offset M] [-o table|json]"
	f := newCLIFlags("versions")
	states := f.fs.String("state", "", "only versions in these states, comma separated (pending, staged, active, draining, expired, failed)")
	limit := f.fs.Int("limit", 0, "at most this many versions (0: the server's default, 100)")
	offset := f.fs.Int("offset", 0, "skip this many matching versions first")
	app, err := f.parseApp(args, usage)
	if err != nil {
		return err
	}
	opts := registry.ListVersionsOptions{Limit: *limit, Offset: *offset}
	if *states != "" {
		for _, name := range strings.Split(*states, ",") {
			opts.States = append(opts.States, registry.State(strings.TrimSpace(name)))
		}
	}
	if err := opts.Check(); err != nil {
		return usageError{msg: fmt.Sprintf("versions: %v", strings.TrimPrefix(err.Error(), registry.ErrInvalid.Error()+": "))}
	}
	list, err := f.client().Versions(ctx, app, opts)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return printJSON(stdout, list)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tLIFE\tSTATE\tSERVICE\tDEPLOYED\tACTIVE\tDRAINING\tEXPIRED\tLAST RPS")
	for _, v := range list.Versions {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Label, v.Life, v.State,
			service(v.Version), ago(now, &v.PendingAt), ago(now, v.ActiveAt), ago(now, v.DrainingAt), ago(now, v.ExpiredAt), rps(v.Version))
	}
	if len(list.Versions) == 0 {
		fmt.Fprintf(tw, "(no versions of %s)\n", app)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if shown := len(list.Versions); list.Offset > 0 || list.Offset+shown < list.Total {
		_, err = fmt.Fprintf(stdout, "(%d to %d of %d; --offset %d for more)\n", min(list.Offset+1, list.Offset+shown),
			list.Offset+shown, list.Total, list.Offset+shown)
	}
	return err
}

// runPolicy: skewguard policy <namespace>/<app>
func runPolicy(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "policy <namespace>/<app> [-o table|json]"
	f := newCLIFlags("policy")
	app, err := f.parseApp(args, usage)
	if err != nil {
		return err
	}
	view, err := f.client().Policy(ctx, app)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return printJSON(stdout, view)
	}
	names := make([]string, 0, len(view.Resolved))
	for name := range view.Resolved {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
	for _, name := range names {
		r := view.Resolved[name]
		source := r.Source
		if r.Setting != "" {
			source += " (" + r.Setting + ")"
		}
		value := "-"
		switch v := r.Value.(type) {
		case nil:
		case float64: // JSON numbers: whole milliseconds and seconds print whole
			value = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			value = fmt.Sprint(v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, value, source)
	}
	return tw.Flush()
}

func service(v registry.Version) string {
	if v.ServiceName == "" {
		return "-"
	}
	return v.ServiceName + ":" + strconv.Itoa(int(v.ServicePort))
}

func rps(v registry.Version) string {
	if v.LastRPS == nil {
		return "-"
	}
	return strconv.FormatFloat(*v.LastRPS, 'g', 4, 64)
}

// ago prints how long before now t was, or "-".
func ago(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(*t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// runAudit: skewguard audit <namespace>/<app> [<version>]
func runAudit(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "audit <namespace>/<app> [<version>] [--limit N] [-o table|json]"
	f := newCLIFlags("audit")
	limit := f.fs.Int("limit", 0, "with no version: how many of the app's newest entries")
	pos, err := f.parse(args, usage)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usageError{msg: "usage: skewguard " + usage}
	}
	app, err := parseApp(pos[0])
	if err != nil {
		return err
	}
	var list api.AuditList
	if len(pos) == 2 {
		list, err = f.client().Audit(ctx, registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: pos[1]})
	} else {
		list, err = f.client().AppAudit(ctx, app, *limit)
	}
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return printJSON(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tVERSION\tLIFE\tEVENT\tSTATE\tACTOR\tREASON")
	for _, e := range list.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.At.Local().Format(time.DateTime), e.Version.Label, e.Life,
			e.Event, transition(e), actor(e.Actor), oneLine(e.Reason))
	}
	return tw.Flush()
}

func transition(e registry.AuditEntry) string {
	switch {
	case e.FromState != nil && e.ToState != nil:
		return string(*e.FromState) + " → " + string(*e.ToState)
	case e.ToState != nil:
		return "→ " + string(*e.ToState)
	}
	return "-"
}

func actor(a registry.Actor) string {
	id := a.ID
	if id == "" {
		id = a.Name
	}
	if id == "" {
		return string(a.Type)
	}
	return string(a.Type) + ":" + id
}

func oneLine(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Join(strings.Fields(s), " ")
}

// runExpire: skewguard expire <namespace>/<app> <version>... [--reason R]
func runExpire(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "expire <namespace>/<app> <version>... [--reason R] [-o table|json]"
	f := newCLIFlags("expire")
	reason := f.fs.String("reason", "", "why, for the audit trail")
	pos, err := f.parse(args, usage)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usageError{msg: "usage: skewguard " + usage}
	}
	app, err := parseApp(pos[0])
	if err != nil {
		return err
	}
	if len(pos) == 2 {
		return act(ctx, f, app, pos[1], workflows.UpdateExpire, *reason, stdout)
	}
	res, err := f.client().BulkExpire(ctx, app, pos[1:], *reason)
	if err != nil {
		return err
	}
	return printBulk(stdout, *f.output, res)
}

func actionCommand(action string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, _ io.Writer) error {
		usage := action + " <namespace>/<app> <version> [--reason R] [-o table|json]"
		f := newCLIFlags(action)
		reason := f.fs.String("reason", "", "why, for the audit trail")
		ref, err := f.parseVersion(args, usage)
		if err != nil {
			return err
		}
		return act(ctx, f, ref.AppRef(), ref.Label, action, *reason, stdout)
	}
}

func act(ctx context.Context, f *cliFlags, app registry.AppRef, version, action, reason string, stdout io.Writer) error {
	ref := registry.VersionRef{Namespace: app.Namespace, App: app.Name, Label: version}
	out, err := f.client().Act(ctx, ref, action, reason)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return printJSON(stdout, out)
	}
	if out.Pending() {
		_, err = fmt.Fprintf(stdout, "%s version %s: pending (%s; update %s)\n", app, out.Version, out.Message, out.UpdateID)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s version %s: %s (%s)\n", app, out.Version, out.State, out.Message)
	return err
}

// runThreshold: skewguard threshold <namespace>/<app> --older-than 2h [--dry-run] [--reason R]
func runThreshold(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "threshold <namespace>/<app> --older-than <age, e.g. 2h or 7d> [--dry-run] [--reason R] [-o table|json]"
	f := newCLIFlags("threshold")
	olderThan := f.fs.String("older-than", "", "expire every live version deployed longer ago than this, except the Active one")
	dryRun := f.fs.Bool("dry-run", false, "only list what would be expired")
	reason := f.fs.String("reason", "", "why, for the audit trail")
	pos, err := f.parse(args, usage)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{msg: "usage: skewguard " + usage}
	}
	if _, err := api.ParseAge(*olderThan); err != nil {
		return usageError{msg: fmt.Sprintf("threshold: --older-than: %v", err)}
	}
	app, err := parseApp(pos[0])
	if err != nil {
		return err
	}
	res, err := f.client().Threshold(ctx, app, api.ThresholdBody{OlderThan: *olderThan, DryRun: *dryRun, Reason: *reason})
	if err != nil {
		return err
	}
	return printBulk(stdout, *f.output, res)
}

// errSomeFailed makes the exit status non-zero when some versions of a bulk action failed.
var errSomeFailed = errors.New("some versions failed")

func printBulk(stdout io.Writer, output string, res api.BulkResult) error {
	if output == "json" {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tRESULT\tSTATE\tDETAIL")
		for _, r := range res.Results {
			if r.OK {
				fmt.Fprintf(tw, "%s\tok\t%s\t%s\n", r.Version, r.State, oneLine(r.Message))
			} else if r.Pending() {
				fmt.Fprintf(tw, "%s\tpending\t-\t%s\n", r.Version, oneLine(r.Message))
			} else if r.Error != nil {
				fmt.Fprintf(tw, "%s\tfailed\t-\t%s: %s\n", r.Version, r.Error.Code, oneLine(r.Error.Message))
			}
		}
		for _, s := range res.Skipped {
			fmt.Fprintf(tw, "%s\tskipped\t-\t%s\n", s.Version, oneLine(s.Reason))
		}
		if len(res.Results) == 0 && len(res.Skipped) == 0 {
			fmt.Fprintln(tw, "(nothing to do)")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if res.Failed > 0 {
		return fmt.Errorf("%w: %d of %d", errSomeFailed, res.Failed, len(res.Results))
	}
	return nil
}

// runPlan: skewguard plan <namespace>/<app> <version> [-o yaml|json]. The version's pending
// plan (advise mode), as YAML for `kubectl apply -f -` (the default) or as the API's JSON.
func runPlan(ctx context.Context, args []string, stdout, _ io.Writer) error {
	const usage = "plan <namespace>/<app> <version> [-o yaml|json]"
	f := newCLIFlags("plan")
	*f.output, f.outputs = "yaml", []string{"yaml", "json"}
	ref, err := f.parseVersion(args, usage)
	if err != nil {
		return err
	}
	p, err := f.client().Plan(ctx, ref)
	if err != nil {
		return err
	}
	if *f.output == "json" {
		return printJSON(stdout, p)
	}
	doc, err := p.YAML()
	if err != nil {
		return err
	}
	_, err = stdout.Write(doc)
	return err
}
