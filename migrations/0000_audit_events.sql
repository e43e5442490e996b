CREATE TABLE `audit_events` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`at` integer NOT NULL,
	`event` text NOT NULL,
	`decision` text NOT NULL,
	`error_code` text,
	`reason` text,
	`detail` text,
	`agent` text,
	`owner` text,
	`attestation_via` text,
	`attestation_jti` text,
	`audience` text,
	`requested_actions` text,
	`granted_actions` text,
	`task_id` text,
	`task_description` text,
	`task_hash` text,
	`justification` text,
	`requested_ttl` integer,
	`policy_version` text NOT NULL,
	`token_jti` text,
	`token_exp` integer,
	`ip` text,
	`colo` text,
	`user_agent` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `audit_events_id_unique` ON `audit_events` (`id`);--> statement-breakpoint
CREATE INDEX `audit_events_agent_seq` ON `audit_events` (`agent`,`seq`);--> statement-breakpoint
CREATE INDEX `audit_events_task` ON `audit_events` (`task_id`);--> statement-breakpoint
CREATE INDEX `audit_events_token_jti` ON `audit_events` (`token_jti`);--> statement-breakpoint
CREATE INDEX `audit_events_at` ON `audit_events` (`at`);