ALTER TABLE `audit_events` ADD `chain` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `chain_seq` integer;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `chain_prev` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `chain_hash` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `stored_at` integer;--> statement-breakpoint
CREATE INDEX `audit_events_chain_seq` ON `audit_events` (`chain`,`chain_seq`);