-- Adoption (issue 16): the Deployment, run without plt.dev/version and annotated plt.dev/adopt,
-- whose pods a version is; empty for every other version. The version's service_name is then
-- the Service skewguard created for it (the only Service retiring the version may delete).

-- +goose Up
ALTER TABLE versions ADD COLUMN adopted_deployment text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE versions DROP COLUMN adopted_deployment;
