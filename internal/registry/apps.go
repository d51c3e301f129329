package registry

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// BumpGeneration increments the app's route generation (for changes the registry does not see,
// such as a new Gateway parent) and returns the new value.
func (s *Store) BumpGeneration(ctx context.Context, app AppRef) (int64, error) {
	var gen int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		gen, err = bumpGeneration(ctx, tx, a.ID)
		return err
	})
	return gen, err
}

// Generation returns the app's current route generation. Inside a callback of Flip or Publish
// for app (ctx carries the lock) it is the generation of the snapshot being published, read
// without another connection: the transaction holds the app's lock and one of the pool's
// connections, and asking the pool for another from there could starve it.
func (s *Store) Generation(ctx context.Context, app AppRef) (int64, error) {
	if l, ok := ctx.Value(lockedKey{}).(locked); ok && l.app == app {
		return l.gen, nil
	}
	var gen int64
	err := s.pool.QueryRow(ctx, `SELECT route_generation FROM applications WHERE namespace = $1 AND name = $2`,
		app.Namespace, app.Name).Scan(&gen)
	if err != nil {
		return 0, notFound(err, "application "+app.String())
	}
	return gen, nil
}

// ListApps returns every application, by namespace and name.
func (s *Store) ListApps(ctx context.Context) ([]Application, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+appColumns+` FROM applications ORDER BY namespace, name`)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	apps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Application, error) { return scanApp(r) })
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return apps, nil
}

// Snapshot reads everything the route renderer needs about app in one repeatable-read,
// read-only transaction, so the versions, the policy and the generation agree with each other.
func (s *Store) Snapshot(ctx context.Context, app AppRef) (Snapshot, error) {
	var snap Snapshot
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			a, err := scanApp(tx.QueryRow(ctx, `SELECT `+appColumns+`
				FROM applications WHERE namespace = $1 AND name = $2`, app.Namespace, app.Name))
			if err != nil {
				return notFound(err, "application "+app.String())
			}
			snap, err = readSnapshot(ctx, tx, a)
			return err
		})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot of %s: %w", app, err)
	}
	return snap, nil
}

// readSnapshot reads the routed versions and the policy of a (read in the same transaction).
func readSnapshot(ctx context.Context, q querier, a Application) (Snapshot, error) {
	snap := Snapshot{App: a, Generation: a.RouteGeneration, Pinned: []Version{}}
	rows, err := q.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.state IN ('active', 'draining', 'staged') ORDER BY v.id`, a.ID)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read versions: %w", err)
	}
	vs, err := collectVersions(rows)
	if err != nil {
		return Snapshot{}, fmt.Errorf("read versions: %w", err)
	}
	for _, v := range vs {
		if v.State == Active {
			snap.Active = &v
		} else {
			snap.Pinned = append(snap.Pinned, v)
		}
	}
	snap.Policy, err = readPolicy(ctx, q, a.ID)
	return snap, err
}

// Routed reports whether the snapshot has anything the routes send requests to.
func (s Snapshot) Routed() bool { return s.Active != nil || len(s.Pinned) > 0 }

// Publish runs fn with the app's snapshot while holding the app's lock, so that nothing else
// about the app can commit meanwhile: route writes made by fn are serialized with every state
// change and carry the newest generation. An error from fn is returned; nothing is written to
// the registry either way. ErrNotFound when the app is unknown.
func (s *Store) Publish(ctx context.Context, app AppRef, fn func(ctx context.Context, snap Snapshot) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		snap, err := readSnapshot(ctx, tx, a)
		if err != nil {
			return err
		}
		return fn(withLock(ctx, snap), snap)
	})
}

// lockedKey marks a context inside a transaction that holds an app's lock.
type lockedKey struct{}

type locked struct {
	app AppRef
	gen int64
}

func withLock(ctx context.Context, snap Snapshot) context.Context {
	return context.WithValue(ctx, lockedKey{}, locked{app: AppRef{Namespace: snap.App.Namespace, Name: snap.App.Name}, gen: snap.Generation})
}
