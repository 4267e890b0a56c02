-- Subject hashes name their key from entry version 3 on (`k2:<hex>`); the
-- search index holds every subject in that keyed form, so one search by a
-- subject's hashes under every configured key finds entries of all
-- versions. Rows indexed before this migration hold the bare hash of a
-- version 1 or 2 entry, made by the one key there was: key id k1.
UPDATE audit_index SET subject = 'k1:' || subject
WHERE subject IS NOT NULL AND subject NOT LIKE '%:%';
