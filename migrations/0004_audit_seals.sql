CREATE TABLE `audit_seals` (
	`seq` integer PRIMARY KEY NOT NULL,
	`prev_hash` text NOT NULL,
	`hash` text NOT NULL
);
--> statement-breakpoint
CREATE TRIGGER `audit_seals_no_update` BEFORE UPDATE ON `audit_seals`
BEGIN
  SELECT RAISE(ABORT, 'audit_seals is append-only');
END;
--> statement-breakpoint
CREATE TRIGGER `audit_seals_no_delete` BEFORE DELETE ON `audit_seals`
BEGIN
  SELECT RAISE(ABORT, 'audit_seals is append-only');
END;
--> statement-breakpoint
CREATE TRIGGER `audit_seals_no_replace` BEFORE INSERT ON `audit_seals`
WHEN EXISTS (SELECT 1 FROM `audit_seals` WHERE `seq` = NEW.`seq`)
BEGIN
  SELECT RAISE(ABORT, 'audit_seals is append-only');
END;
