CREATE TABLE `audit_archive` (
	`segment` integer PRIMARY KEY NOT NULL,
	`key` text NOT NULL,
	`first_seq` integer NOT NULL,
	`last_seq` integer NOT NULL,
	`records` integer NOT NULL,
	`bytes` integer NOT NULL,
	`sha256` text NOT NULL,
	`first_at` integer NOT NULL,
	`last_at` integer NOT NULL,
	`seal_hash` text NOT NULL,
	`heads_key` text NOT NULL,
	`heads_sha256` text NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL,
	`archived_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TRIGGER `audit_archive_no_update` BEFORE UPDATE ON `audit_archive`
BEGIN
  SELECT RAISE(ABORT, 'audit_archive is append-only');
END;
--> statement-breakpoint
CREATE TRIGGER `audit_archive_no_delete` BEFORE DELETE ON `audit_archive`
BEGIN
  SELECT RAISE(ABORT, 'audit_archive is append-only');
END;
--> statement-breakpoint
CREATE TRIGGER `audit_archive_no_replace` BEFORE INSERT ON `audit_archive`
WHEN EXISTS (SELECT 1 FROM `audit_archive` WHERE `segment` = NEW.`segment`)
BEGIN
  SELECT RAISE(ABORT, 'audit_archive is append-only');
END;
--> statement-breakpoint
-- The one delete the audit log allows: a record (or its seal) that an archive segment already holds.
DROP TRIGGER `audit_events_no_delete`;
--> statement-breakpoint
CREATE TRIGGER `audit_events_no_delete` BEFORE DELETE ON `audit_events`
WHEN OLD.`seq` > (SELECT COALESCE(MAX(`last_seq`), 0) FROM `audit_archive`)
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only: only archived records may be deleted');
END;
--> statement-breakpoint
DROP TRIGGER `audit_seals_no_delete`;
--> statement-breakpoint
CREATE TRIGGER `audit_seals_no_delete` BEFORE DELETE ON `audit_seals`
WHEN OLD.`seq` > (SELECT COALESCE(MAX(`last_seq`), 0) FROM `audit_archive`)
BEGIN
  SELECT RAISE(ABORT, 'audit_seals is append-only: only archived seals may be deleted');
END;
