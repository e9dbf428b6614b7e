-- What the company ranges file and the browser say, kept with each hit:
-- the company's industry and size (feed filters), and the visitor's first
-- Accept-Language tag.
ALTER TABLE hits
    ADD COLUMN IF NOT EXISTS company_industry LowCardinality(String) AFTER company_domain,
    ADD COLUMN IF NOT EXISTS company_size LowCardinality(String) AFTER company_industry,
    ADD COLUMN IF NOT EXISTS lang LowCardinality(String) AFTER country;
