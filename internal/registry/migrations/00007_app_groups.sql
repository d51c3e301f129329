-- App groups (issue 16): the plt.dev/group label of a version's pods. The versions of one group
-- in one namespace share a pin cookie, so a session that started on version N of one member
-- reaches N of every member. Kept per version (like the path and hostname): a version keeps the
-- cookie it was deployed with when its app joins or leaves a group. '' is no group.

-- +goose Up
ALTER TABLE versions ADD COLUMN app_group text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE versions DROP COLUMN app_group;
