-- Retention of the records about access and requests, so that no table
-- keeps data forever: the audit log (which holds the API callers'
-- addresses) 400 days, a year and a month of who read what; data subject
-- requests three years, the time within which their handling may have to
-- be shown.
ALTER TABLE audit_log MODIFY TTL toDateTime(ts) + INTERVAL 400 DAY DELETE;
ALTER TABLE data_requests MODIFY TTL toDateTime(requested_at) + INTERVAL 1095 DAY DELETE;
