-- The visitor's city, when a city database is configured (--ipdb.city-mmdb).
ALTER TABLE hits ADD COLUMN IF NOT EXISTS city LowCardinality(String) AFTER country;
