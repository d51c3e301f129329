-- Per-app maxVersions (issue 16): how many versions may be Draining at once; 0 is no cap, NULL
-- inherits PLT_SKEW_MAX_VERSIONS. The range is internal/bounds.MaxVersions; the check here only
-- keeps a negative count out of the table.

-- +goose Up
ALTER TABLE app_policies ADD COLUMN max_versions bigint CHECK (max_versions >= 0);

-- +goose Down
ALTER TABLE app_policies DROP COLUMN max_versions;
