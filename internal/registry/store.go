// Package registry owns skewguard's state in PostgreSQL: the applications, the lives of their
// version labels and the state each is in, the append-only audit trail of every change, the
// per-application policy overrides and the pods that registered. The legal state moves are
// written once (transitions in model.go); every change to an application is serialized by a
// lock on its row, and partial unique indexes back the invariants (one Active version per app,
// one live life per label) whatever the code does.
package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is the registry backed by a PostgreSQL connection pool. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Open returns a Store for databaseURL (a URL or keyword/value DSN; empty means pgx reads the
// libpq PG* variables). Connections are made lazily: call Ping to check the server is reachable.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open with a parsed pool configuration (for example with a query tracer).
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "skewguard"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close waits for borrowed connections to be returned and closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// inTx runs fn in a read-committed transaction and commits it when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{}, fn)
}

// lockApp takes the application's row lock, which serializes every change to its versions and
// route generation. FOR NO KEY UPDATE does not block the foreign-key checks of concurrent
// inserts that reference the row (pods, audit).
func lockApp(ctx context.Context, tx pgx.Tx, app AppRef) (Application, error) {
	a, err := scanApp(tx.QueryRow(ctx, `
		SELECT `+appColumns+`
		FROM applications WHERE namespace = $1 AND name = $2
		FOR NO KEY UPDATE`, app.Namespace, app.Name))
	if err != nil {
		return Application{}, notFound(err, "application "+app.String())
	}
	return a, nil
}

// ensureApp creates the application row if needed and locks it.
func ensureApp(ctx context.Context, tx pgx.Tx, app AppRef) (Application, error) {
	if _, err := tx.Exec(ctx, `
		INSERT INTO applications (namespace, name) VALUES ($1, $2)
		ON CONFLICT (namespace, name) DO NOTHING`, app.Namespace, app.Name); err != nil {
		return Application{}, fmt.Errorf("create application %s: %w", app, err)
	}
	return lockApp(ctx, tx, app)
}

// bumpGeneration increments the app's route generation; the caller holds the app lock.
func bumpGeneration(ctx context.Context, tx pgx.Tx, appID int64) (int64, error) {
	var gen int64
	err := tx.QueryRow(ctx, `
		UPDATE applications SET route_generation = route_generation + 1
		WHERE id = $1 RETURNING route_generation`, appID).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("bump route generation: %w", err)
	}
	return gen, nil
}

// notFound turns pgx.ErrNoRows into a wrapped ErrNotFound naming what was missing.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func validateApp(app AppRef) error {
	if app.Namespace == "" || app.Name == "" {
		return invalid("application needs a namespace and a name, got %q", app.String())
	}
	return nil
}

func validateRef(ref VersionRef) error {
	if ref.Namespace == "" || ref.App == "" || ref.Label == "" {
		return invalid("version needs a namespace, an app and a label, got %q", ref.String())
	}
	return nil
}

func validateActor(a Actor) error {
	switch a.Type {
	case ActorSystem, ActorPod, ActorUser, ActorWorkflow:
		return nil
	}
	return invalid("unknown actor type %q", a.Type)
}

// rowScanner is what pgx.Row and pgx.Rows have in common.
type rowScanner interface {
	Scan(dest ...any) error
}

// appColumns are the columns scanApp reads from applications.
const appColumns = `id, namespace, name, route_generation, created_at, claim_host, claim_path, cookie_name`

func scanApp(r rowScanner) (Application, error) {
	var a Application
	var host, path *string
	err := r.Scan(&a.ID, &a.Namespace, &a.Name, &a.RouteGeneration, &a.CreatedAt, &host, &path, &a.CookieName)
	if err == nil && host != nil && path != nil {
		a.Claim = &Claim{Host: *host, Path: *path}
	}
	return a, err
}

// versionColumns are the columns scanVersion reads, from versions v joined to applications a.
const versionColumns = `v.id, v.app_id, a.namespace, a.name, v.label, v.life, v.state,
	v.service_name, v.service_port, v.path_prefix, v.hostname, v.workflow_id,
	v.pending_at, v.staged_at, v.active_at, v.draining_at, v.expired_at, v.last_rps, v.last_rps_at,
	v.deployed_at, v.pods_created_at, v.failed_at, v.failure, v.adopted_deployment, v.app_group`

const versionsFrom = ` FROM versions v JOIN applications a ON a.id = v.app_id `

func scanVersion(r rowScanner) (Version, error) {
	var v Version
	err := r.Scan(&v.ID, &v.AppID, &v.Namespace, &v.App, &v.Label, &v.Life, &v.State,
		&v.ServiceName, &v.ServicePort, &v.PathPrefix, &v.Hostname, &v.WorkflowID,
		&v.PendingAt, &v.StagedAt, &v.ActiveAt, &v.DrainingAt, &v.ExpiredAt, &v.LastRPS, &v.LastRPSAt,
		&v.DeployedAt, &v.PodsCreatedAt, &v.FailedAt, &v.Failure, &v.AdoptedDeployment, &v.Group)
	return v, err
}

func collectVersions(rows pgx.Rows) ([]Version, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Version, error) { return scanVersion(r) })
}
