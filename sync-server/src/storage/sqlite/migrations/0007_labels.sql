-- Privacy labels (issue 18, docs/adr/0016): the labels a member's grant
-- names (a JSON array of label names), which labelled logs
-- (`SECTION~LABEL`) of its sections it reads. Existing rows name none:
-- grants made before labels cover only unlabelled entries.
ALTER TABLE members ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
