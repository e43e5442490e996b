CREATE TABLE `audit_writer_stats` (
	`id` integer PRIMARY KEY NOT NULL,
	`write_queries` integer NOT NULL,
	`records_written` integer NOT NULL,
	`retried_deliveries` integer NOT NULL,
	`last_write_at` integer
);
