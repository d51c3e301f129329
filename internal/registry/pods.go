package registry

import (
	"context"
	"encoding/json"
	"fmt"
)

// Pods are keyed by (namespace, name). The agent identifies itself by pod name only (its
// hostname), so the lookups by id below go by name; should two namespaces hold a pod of the
// same name, the one seen most recently is meant.

// UpsertPod records that a pod registered or was seen: first_seen is kept, last_seen is the
// database clock. Nil AppID, VersionID or Metadata keep what was recorded before.
func (s *Store) UpsertPod(ctx context.Context, p Pod) error {
	if p.ID == "" || p.Namespace == "" {
		return invalid("pod needs a namespace and an id, got %q/%q", p.Namespace, p.ID)
	}
	meta, err := podMetadata(p.Metadata)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO pods (namespace, name, app_id, version_id, metadata) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (namespace, name) DO UPDATE SET
			app_id     = coalesce(excluded.app_id, pods.app_id),
			version_id = coalesce(excluded.version_id, pods.version_id),
			metadata   = coalesce(excluded.metadata, pods.metadata),
			last_seen  = now()`,
		p.Namespace, p.ID, p.AppID, p.VersionID, meta)
	if err != nil {
		return fmt.Errorf("upsert pod %s/%s: %w", p.Namespace, p.ID, err)
	}
	return nil
}

// RecordPodState stores the metadata the agent reports for the pod and marks it seen.
func (s *Store) RecordPodState(ctx context.Context, podID string, metadata json.RawMessage) error {
	meta, err := podMetadata(metadata)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE pods SET metadata = $2, last_seen = now()
		WHERE (namespace, name) = (SELECT namespace, name FROM pods WHERE name = $1 ORDER BY last_seen DESC LIMIT 1)`,
		podID, meta)
	if err != nil {
		return fmt.Errorf("record state of pod %s: %w", podID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pod %s: %w", podID, ErrNotFound)
	}
	return nil
}

// GetPod returns the pod named podID.
func (s *Store) GetPod(ctx context.Context, podID string) (Pod, error) {
	var p Pod
	err := s.pool.QueryRow(ctx, `
		SELECT name, namespace, app_id, version_id, first_seen, last_seen, metadata
		FROM pods WHERE name = $1 ORDER BY last_seen DESC LIMIT 1`, podID).
		Scan(&p.ID, &p.Namespace, &p.AppID, &p.VersionID, &p.FirstSeen, &p.LastSeen, &p.Metadata)
	if err != nil {
		return Pod{}, notFound(err, "pod "+podID)
	}
	return p, nil
}

func podMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if !json.Valid(m) {
		return nil, invalid("pod metadata is not valid JSON")
	}
	return m, nil
}
