-- Hand-edited after drizzle-kit: WITHOUT ROWID (the key is its only index: a count is one row written) and
-- the trigger that keeps the counts (docs/storage.md, `usage_daily`).
CREATE TABLE `usage_daily` (
	`day` text NOT NULL,
	`agent` text NOT NULL,
	`audience` text NOT NULL,
	`actions` text NOT NULL,
	`outcome` text NOT NULL,
	`reason` text NOT NULL,
	`count` integer NOT NULL,
	PRIMARY KEY(`day`, `agent`, `audience`, `actions`, `outcome`, `reason`)
) WITHOUT ROWID;
--> statement-breakpoint
-- Each `/token` decision, and each approver's decision that settled an approval, counted as its record is
-- inserted: the audit writer skips a record D1 (or the archive) holds already, so a redelivery counts
-- nothing. A sampler's summary record (`detail.summary`) counts the records it stands for. No delete
-- trigger: the archive's deletes leave the counts as they are.
CREATE TRIGGER `usage_daily_count` AFTER INSERT ON `audit_events`
WHEN NEW.`event` = 'token.exchange' OR (NEW.`event` = 'admin.approval.decide' AND NEW.`decision` = 'granted')
BEGIN
  INSERT INTO `usage_daily` (`day`, `agent`, `audience`, `actions`, `outcome`, `reason`, `count`)
  SELECT d.`day`, d.`agent`, d.`audience`, d.`actions`, d.`outcome`,
    CASE WHEN d.`outcome` = 'refused' THEN d.`reason` ELSE '' END, d.`weight`
  FROM (
    SELECT
      strftime('%Y-%m-%d', NEW.`at` / 1000, 'unixepoch') AS `day`,
      COALESCE(NEW.`agent`, '') AS `agent`,
      COALESCE(NEW.`audience`, '') AS `audience`,
      COALESCE(CASE WHEN NEW.`event` = 'token.exchange' AND NEW.`decision` = 'granted'
        THEN NEW.`granted_actions` ELSE NEW.`requested_actions` END, '') AS `actions`,
      CASE
        WHEN NEW.`event` = 'admin.approval.decide' THEN
          CASE j.`detail` ->> '$.status' WHEN 'approved' THEN 'approved' WHEN 'denied' THEN 'denied' END
        WHEN NEW.`decision` = 'granted' THEN 'granted'
        WHEN NEW.`reason` = 'approval_required' THEN 'approval_asked'
        WHEN NEW.`reason` IN ('approval_pending', 'approval_poll_too_fast') THEN 'approval_waiting'
        ELSE 'refused'
      END AS `outcome`,
      COALESCE(NEW.`reason`, '') AS `reason`,
      COALESCE(CAST(j.`detail` ->> '$.summary.count' AS INTEGER), 1) AS `weight`
    FROM (SELECT CASE WHEN json_valid(NEW.`detail`) THEN NEW.`detail` ELSE '{}' END AS `detail`) j
  ) d
  WHERE d.`outcome` IS NOT NULL
  ON CONFLICT (`day`, `agent`, `audience`, `actions`, `outcome`, `reason`) DO UPDATE SET `count` = `count` + excluded.`count`;
END;
