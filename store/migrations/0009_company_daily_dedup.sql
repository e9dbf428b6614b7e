-- company_daily is written by its materialized view in the same insert as
-- hits; with deduplicate_blocks_in_dependent_materialized_views a retried
-- block (same insert_deduplication_token) must be recognised here too,
-- which needs a deduplication window on this table as well.
ALTER TABLE company_daily MODIFY SETTING non_replicated_deduplication_window = 10000;
