-- The version registry: applications, the lives of their version labels, an append-only audit
-- trail, per-application policy overrides and the pods that registered.

-- +goose Up
CREATE TABLE applications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace        text        NOT NULL CHECK (namespace <> ''),
    name             text        NOT NULL CHECK (name <> ''),
    -- Bumped on every change that alters routing; route writes carry it so that a late write
    -- never replaces routes rendered from a newer generation.
    route_generation bigint      NOT NULL DEFAULT 0 CHECK (route_generation >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);

-- One row per life of a version label: a label that expired and is deployed again gets a new
-- row with life + 1, and the old row keeps its history.
CREATE TABLE versions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       bigint      NOT NULL REFERENCES applications (id),
    label        text        NOT NULL CHECK (label <> ''),
    life         integer     NOT NULL CHECK (life >= 1),
    state        text        NOT NULL CHECK (state IN ('pending', 'staged', 'active', 'draining', 'expired')),
    service_name text        NOT NULL DEFAULT '',
    service_port integer     NOT NULL DEFAULT 0 CHECK (service_port BETWEEN 0 AND 65535),
    path_prefix  text        NOT NULL DEFAULT '',
    hostname     text        NOT NULL DEFAULT '',
    workflow_id  text        NOT NULL DEFAULT '',
    pending_at   timestamptz NOT NULL DEFAULT now(),
    staged_at    timestamptz,
    active_at    timestamptz,
    draining_at  timestamptz,
    expired_at   timestamptz,
    last_rps     double precision,
    last_rps_at  timestamptz,
    UNIQUE (app_id, label, life),
    CHECK ((state = 'expired') = (expired_at IS NOT NULL))
);

-- The invariants, enforced by the database whatever the code does: at most one Active version
-- per application, and at most one live (not expired) life per label. The second index is also
-- the lookup path for registrations (LiveVersion).
CREATE UNIQUE INDEX versions_one_active_per_app ON versions (app_id) WHERE state = 'active';
CREATE UNIQUE INDEX versions_one_live_per_label ON versions (app_id, label) WHERE state <> 'expired';

CREATE TABLE version_audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     bigint      NOT NULL REFERENCES applications (id),
    version_id bigint      NOT NULL REFERENCES versions (id),
    event      text        NOT NULL CHECK (event <> ''),
    from_state text,
    to_state   text,
    actor_type text        NOT NULL CHECK (actor_type IN ('system', 'pod', 'user', 'workflow')),
    actor_id   text        NOT NULL DEFAULT '',
    actor_name text        NOT NULL DEFAULT '',
    reason     text        NOT NULL DEFAULT '',
    detail     jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX version_audit_by_version ON version_audit (version_id, id);
CREATE INDEX version_audit_by_app ON version_audit (app_id, id);

-- +goose StatementBegin
CREATE FUNCTION version_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'version_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER version_audit_no_update_delete
    BEFORE UPDATE OR DELETE ON version_audit
    FOR EACH ROW EXECUTE FUNCTION version_audit_append_only();
CREATE TRIGGER version_audit_no_truncate
    BEFORE TRUNCATE ON version_audit
    FOR EACH STATEMENT EXECUTE FUNCTION version_audit_append_only();

-- Per-application overrides; NULL inherits the global value.
CREATE TABLE app_policies (
    app_id            bigint PRIMARY KEY REFERENCES applications (id),
    grace_period_ms   bigint CHECK (grace_period_ms >= 0),
    max_alive_ms      bigint CHECK (max_alive_ms > 0),
    check_interval_ms bigint CHECK (check_interval_ms > 0),
    traffic_window_ms bigint CHECK (traffic_window_ms > 0),
    cookie_max_age    bigint CHECK (cookie_max_age > 0),
    auto_cleanup      boolean,
    require_approval  boolean,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (max_alive_ms IS NULL OR grace_period_ms IS NULL OR max_alive_ms >= grace_period_ms)
);

-- Pods that registered or were seen by the pod watch. The agent identifies itself by pod name
-- (its hostname) only, so lookups go by name; the key still includes the namespace because pod
-- names are unique per namespace only.
CREATE TABLE pods (
    namespace  text        NOT NULL CHECK (namespace <> ''),
    name       text        NOT NULL CHECK (name <> ''),
    app_id     bigint REFERENCES applications (id),
    version_id bigint REFERENCES versions (id),
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    metadata   jsonb,
    PRIMARY KEY (namespace, name)
);

CREATE INDEX pods_by_name ON pods (name, last_seen DESC);

-- +goose Down
DROP TABLE pods;
DROP TABLE app_policies;
DROP TABLE version_audit;
DROP FUNCTION version_audit_append_only();
DROP TABLE versions;
DROP TABLE applications;
