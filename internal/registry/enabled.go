package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ReasonProtectionOff is the audited reason of a version expired because its app's skew
// protection is switched off (Policy.Enabled false).
const ReasonProtectionOff = "skew protection disabled for the app"

// SwitchResult is what ApplySwitch did.
type SwitchResult struct {
	// Off says the app's skew protection is off.
	Off bool
	// Expired are the Draining versions expired now, oldest first: their routes are gone with
	// this transaction, their workflows still have to retire their workloads.
	Expired []Version
	// Generation is the app's route generation the snapshot was published with.
	Generation int64
}

// ApplySwitch brings an app in line with its policy's switch in one transaction under the app
// lock. While skew protection is off, every Draining version is expired (audited with
// ReasonProtectionOff and the actor) and the route generation bumped. Then publish, when set,
// is called with the snapshot as it will be committed: its Policy says off, so it is rendered
// as one plain route to the Active version (routes.Input.Plain); while on, with its pins. If
// publish fails, nothing is committed and its error is returned. A repeat expires nothing and
// publishes the same snapshot, generation included, which the route writer finds written
// already. ErrNotFound when the app is unknown.
func (s *Store) ApplySwitch(ctx context.Context, app AppRef, actor Actor, publish func(ctx context.Context, snap Snapshot) error) (SwitchResult, error) {
	if err := errors.Join(validateApp(app), validateActor(actor)); err != nil {
		return SwitchResult{}, err
	}
	var res SwitchResult
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		res = SwitchResult{}
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		p, err := readPolicy(ctx, tx, a.ID)
		if err != nil {
			return err
		}
		res.Off = p.ProtectionOff()
		if res.Off {
			if res.Expired, err = expireDraining(ctx, tx, a.ID, actor); err != nil {
				return err
			}
		}
		if len(res.Expired) > 0 {
			if a.RouteGeneration, err = bumpGeneration(ctx, tx, a.ID); err != nil {
				return err
			}
		}
		res.Generation = a.RouteGeneration
		snap, err := readSnapshot(ctx, tx, a)
		if err != nil {
			return err
		}
		if len(res.Expired) > 0 && !snap.Routed() && a.Claim != nil {
			// Nothing is routed any more: the app lets go of its host and path (as in Flip).
			if _, err := tx.Exec(ctx, `UPDATE applications SET claim_host = NULL, claim_path = NULL WHERE id = $1`, a.ID); err != nil {
				return fmt.Errorf("release claim: %w", err)
			}
			snap.App.Claim = nil
		}
		if publish != nil {
			return publish(withLock(ctx, snap), snap)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			return SwitchResult{}, err
		}
		return SwitchResult{}, fmt.Errorf("apply the skew protection switch of %s: %w", app, err)
	}
	return res, nil
}

// expireDraining expires every Draining version of the app, oldest first, audited with
// ReasonProtectionOff; the caller holds the app lock.
func expireDraining(ctx context.Context, tx pgx.Tx, appID int64, actor Actor) ([]Version, error) {
	rows, err := tx.Query(ctx, `SELECT `+versionColumns+versionsFrom+`
		WHERE v.app_id = $1 AND v.state = 'draining' ORDER BY v.draining_at, v.id`, appID)
	if err != nil {
		return nil, fmt.Errorf("read draining versions: %w", err)
	}
	draining, err := collectVersions(rows)
	if err != nil {
		return nil, fmt.Errorf("read draining versions: %w", err)
	}
	from, to := Draining, Expired
	detail := map[string]any{"enabled": false}
	var expired []Version
	for _, v := range draining {
		nv, err := setState(ctx, tx, v, Expired, "")
		if err != nil {
			return nil, err
		}
		if err := insertAudit(ctx, tx, nv, EventExpired, &from, &to, actor, ReasonProtectionOff, detail); err != nil {
			return nil, err
		}
		expired = append(expired, nv)
	}
	return expired, nil
}
