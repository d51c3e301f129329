-- Version changes are announced: every insert, delete or update of a versions row (except a
-- traffic reading alone) sends NOTIFY skewguard_versions with the row's app_id, delivered when
-- the transaction commits and never when it rolls back. Whoever caches versions (the API's
-- live-version cache) listens and forgets that app's entries. A trigger, not the Go code, so
-- that no writer can forget it.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION skewguard_version_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - 'last_rps' - 'last_rps_at') = (to_jsonb(NEW) - 'last_rps' - 'last_rps_at') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('skewguard_versions', OLD.app_id::text);
    ELSE
        PERFORM pg_notify('skewguard_versions', NEW.app_id::text);
        IF TG_OP = 'UPDATE' AND OLD.app_id <> NEW.app_id THEN
            PERFORM pg_notify('skewguard_versions', OLD.app_id::text);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER versions_changed AFTER INSERT OR UPDATE OR DELETE ON versions
    FOR EACH ROW EXECUTE FUNCTION skewguard_version_changed();

-- +goose Down
DROP TRIGGER versions_changed ON versions;
DROP FUNCTION skewguard_version_changed();
