-- Modes (issue 16): per app, how far skewguard acts on the cluster. manage writes routes and
-- retires workloads (today's behaviour); advise publishes each step as a plan and waits until
-- the cluster shows it applied; observe records versions and writes nothing to the cluster.
-- NULL inherits PLT_SKEW_MODE.
--
-- plans holds the plans of advise mode: one per version and step, the changes (HTTPRoutes as
-- they would be applied, Deployments to scale or delete) as JSON. A newer version's activation
-- plan supersedes an older version's pending one.

-- +goose Up
ALTER TABLE app_policies ADD COLUMN mode text CHECK (mode IN ('manage', 'advise', 'observe'));

CREATE TABLE plans (
    id          bigserial PRIMARY KEY,
    app_id      bigint NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    version     text NOT NULL,
    step        text NOT NULL,
    state       text NOT NULL CHECK (state IN ('pending', 'applied', 'superseded')),
    generation  bigint NOT NULL,
    changes     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (app_id, version, step)
);
CREATE INDEX plans_pending ON plans (app_id) WHERE state = 'pending';

-- +goose Down
DROP TABLE plans;
ALTER TABLE app_policies DROP COLUMN mode;
