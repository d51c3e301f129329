-- Safety: a state for versions that could not be made Active (never ready, routes that cannot be
-- rendered, a refused route write, a claim another app holds), the creation times that order
-- versions found together, and each application's claim of a host and path prefix.

-- +goose Up
ALTER TABLE versions DROP CONSTRAINT versions_state_check;
ALTER TABLE versions ADD CONSTRAINT versions_state_check
    CHECK (state IN ('pending', 'staged', 'active', 'draining', 'expired', 'failed'));
-- When the version's Deployment and its first pod were created (NULL: unknown). Among versions
-- detected together, the newest by these becomes Active.
ALTER TABLE versions ADD COLUMN deployed_at timestamptz;
ALTER TABLE versions ADD COLUMN pods_created_at timestamptz;
ALTER TABLE versions ADD COLUMN failed_at timestamptz;
-- Why the version is failed (or why its last step was refused); empty otherwise.
ALTER TABLE versions ADD COLUMN failure text NOT NULL DEFAULT '';

-- The host and path prefix the app's routes serve ('' host: every host of the listener), held
-- while the app has a routed version. Two apps never hold the same claim: the second is refused.
ALTER TABLE applications ADD COLUMN claim_host text;
ALTER TABLE applications ADD COLUMN claim_path text;
-- The pin cookie the app's routes set and read; '' means the configured default. An app whose
-- claim nests with another app's on a shared host gets a name of its own, so pins never cross.
ALTER TABLE applications ADD COLUMN cookie_name text NOT NULL DEFAULT '';
ALTER TABLE applications ADD CONSTRAINT applications_claim_whole
    CHECK ((claim_host IS NULL) = (claim_path IS NULL));
CREATE UNIQUE INDEX applications_one_claim ON applications (claim_host, claim_path) WHERE claim_path IS NOT NULL;

-- +goose Down
DROP INDEX applications_one_claim;
ALTER TABLE applications DROP CONSTRAINT applications_claim_whole;
ALTER TABLE applications DROP COLUMN cookie_name;
ALTER TABLE applications DROP COLUMN claim_path;
ALTER TABLE applications DROP COLUMN claim_host;
ALTER TABLE versions DROP COLUMN failure;
ALTER TABLE versions DROP COLUMN failed_at;
ALTER TABLE versions DROP COLUMN pods_created_at;
ALTER TABLE versions DROP COLUMN deployed_at;
ALTER TABLE versions DROP CONSTRAINT versions_state_check;
ALTER TABLE versions ADD CONSTRAINT versions_state_check
    CHECK (state IN ('pending', 'staged', 'active', 'draining', 'expired'));
