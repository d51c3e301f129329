package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/skewguard/skewguard/internal/bounds"
)

// PolicyError lists every problem found in a policy. It matches ErrInvalid.
type PolicyError struct {
	Problems []string
}

func (e *PolicyError) Error() string {
	return "invalid policy: " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true for a *PolicyError.
func (e *PolicyError) Is(target error) bool { return target == ErrInvalid }

// Validate checks the fields that are set against the ranges of internal/bounds, the same the
// global variables they override are held to (e.g. checkIntervalMs at least 1 s, maxAliveMs at
// most 30 days, cookieMaxAge at most 400 days, maxVersions 0 to 1000), and a max alive no shorter than the grace
// period when both are set. Nothing here multiplies a value into a time.Duration before its
// range is known. It returns a *PolicyError listing every problem, each naming its field and
// the range, or nil.
func (p Policy) Validate() error {
	problems := bounds.Overrides{GracePeriodMS: p.GracePeriodMS, MaxAliveMS: p.MaxAliveMS,
		CheckIntervalMS: p.CheckIntervalMS, TrafficWindowMS: p.TrafficWindowMS, CookieMaxAge: p.CookieMaxAge,
		MaxVersions: p.MaxVersions,
	}.Check(bounds.ByField)
	if p.Mode != nil && !ValidMode(*p.Mode) {
		problems = append(problems, fmt.Sprintf("mode: %q is not one of manage, advise, observe", *p.Mode))
	}
	if len(problems) > 0 {
		return &PolicyError{Problems: problems}
	}
	return nil
}

const policyColumns = `grace_period_ms, max_alive_ms, check_interval_ms, traffic_window_ms,
	cookie_max_age, auto_cleanup, require_approval, max_versions, enabled, mode`

func readPolicy(ctx context.Context, q querier, appID int64) (Policy, error) {
	var p Policy
	err := q.QueryRow(ctx, `SELECT `+policyColumns+` FROM app_policies WHERE app_id = $1`, appID).
		Scan(&p.GracePeriodMS, &p.MaxAliveMS, &p.CheckIntervalMS, &p.TrafficWindowMS,
			&p.CookieMaxAge, &p.AutoCleanup, &p.RequireApproval, &p.MaxVersions, &p.Enabled, &p.Mode)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Policy{}, fmt.Errorf("read policy: %w", err)
	}
	return p, nil
}

// GetPolicy returns the app's overrides; the zero Policy (inherit everything) when it has none
// or the app is unknown.
func (s *Store) GetPolicy(ctx context.Context, app AppRef) (Policy, error) {
	var p Policy
	err := s.pool.QueryRow(ctx, `SELECT `+policyColumns+` FROM app_policies
		WHERE app_id = (SELECT id FROM applications WHERE namespace = $1 AND name = $2)`,
		app.Namespace, app.Name).
		Scan(&p.GracePeriodMS, &p.MaxAliveMS, &p.CheckIntervalMS, &p.TrafficWindowMS,
			&p.CookieMaxAge, &p.AutoCleanup, &p.RequireApproval, &p.MaxVersions, &p.Enabled, &p.Mode)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Policy{}, fmt.Errorf("policy of %s: %w", app, err)
	}
	return p, nil
}

// PutPolicy replaces the app's overrides with p (nil fields inherit), creating the application
// if needed so that a policy can be set before the first deployment. The cookie Max-Age is part
// of the rendered routes, so changing it bumps the route generation. The change is audited on
// every live version of the app (who, the old and the new overrides), and those versions are
// returned: their lifecycles must be told.
func (s *Store) PutPolicy(ctx context.Context, app AppRef, p Policy, actor Actor) (live []Version, err error) {
	if err := errors.Join(validateApp(app), validateActor(actor)); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		a, err := ensureApp(ctx, tx, app)
		if err != nil {
			return err
		}
		old, err := readPolicy(ctx, tx, a.ID)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO app_policies (app_id, `+policyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (app_id) DO UPDATE SET
				grace_period_ms = excluded.grace_period_ms, max_alive_ms = excluded.max_alive_ms,
				check_interval_ms = excluded.check_interval_ms, traffic_window_ms = excluded.traffic_window_ms,
				cookie_max_age = excluded.cookie_max_age, auto_cleanup = excluded.auto_cleanup,
				require_approval = excluded.require_approval, max_versions = excluded.max_versions,
				enabled = excluded.enabled, mode = excluded.mode,
				updated_at = now()`,
			a.ID, p.GracePeriodMS, p.MaxAliveMS, p.CheckIntervalMS, p.TrafficWindowMS,
			p.CookieMaxAge, p.AutoCleanup, p.RequireApproval, p.MaxVersions, p.Enabled, p.Mode)
		if err != nil {
			return fmt.Errorf("write policy: %w", err)
		}
		// The cookie Max-Age and the switch (pins or one plain route) shape the rendered routes.
		if !equalPtr(old.CookieMaxAge, p.CookieMaxAge) || old.ProtectionOff() != p.ProtectionOff() {
			if _, err = bumpGeneration(ctx, tx, a.ID); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
			WHERE v.app_id = $1 AND v.state <> 'expired' ORDER BY v.id`, a.ID)
		if err != nil {
			return fmt.Errorf("read live versions: %w", err)
		}
		if live, err = collectVersions(rows); err != nil {
			return fmt.Errorf("read live versions: %w", err)
		}
		detail := map[string]any{"from": old, "to": p}
		for _, v := range live {
			if err := insertAudit(ctx, tx, v, EventPolicyChanged, nil, nil, actor, "policy of "+app.String()+" replaced", detail); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("put policy of %s: %w", app, err)
	}
	return live, nil
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
