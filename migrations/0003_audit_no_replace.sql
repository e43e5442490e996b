-- INSERT OR REPLACE (and REPLACE INTO) deletes a clashing row without firing DELETE triggers: refuse any
-- insert that would replace an existing record, before SQLite resolves the conflict.
CREATE TRIGGER `audit_events_no_replace` BEFORE INSERT ON `audit_events`
WHEN EXISTS (SELECT 1 FROM `audit_events` WHERE `seq` = NEW.`seq` OR `id` = NEW.`id`)
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only');
END;
