-- Per-app skew protection switch (issue 16, ICC's `enabled`): NULL inherits (on), false turns the
-- app's skew protection off: its Draining versions expire and its routes are one plain route to
-- the Active version.

-- +goose Up
ALTER TABLE app_policies ADD COLUMN enabled boolean;

-- +goose Down
ALTER TABLE app_policies DROP COLUMN enabled;
