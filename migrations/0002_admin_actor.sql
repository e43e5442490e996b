ALTER TABLE `audit_events` ADD `actor` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `actor_role` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `target` text;--> statement-breakpoint
ALTER TABLE `audit_events` ADD `admin_reason` text;