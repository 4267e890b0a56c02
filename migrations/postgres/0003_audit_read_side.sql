-- Columns for auditor searches and reports without parsing entries:
-- the action name and a bit set of the field decisions present
-- (1 returned, 2 masked, 4 withheld, 8 accepted, 16 refused).
-- Entries appended before this migration have action NULL and decisions 0.
ALTER TABLE audit_log ADD COLUMN action TEXT;
ALTER TABLE audit_log ADD COLUMN decisions INTEGER NOT NULL DEFAULT 0;
