-- ListDisputes `due_before`, newest first (issue 23, part 5: measured at 1,000,000 disputes).
-- With `disputes_by_created` the plan walked a tenant's disputes newest first and checked
-- `due_time` on each heap row it passed, so a page of 20 visited hundreds of rows scattered
-- over the table (scale bench: 0.54x the throughput of a 10,000-dispute database). With
-- `due_time` as a trailing key column the check happens inside the index and only the rows
-- of the page are read from the heap. The new index serves every query the old one served
-- (its leading columns are the same), so the old one goes.
--
-- Like 0018: a plain `create index` (sqlx runs a migration in a transaction); a large
-- installation may run it beforehand with `create index concurrently`, which `if not exists`
-- turns this statement into a no-op for.
create index if not exists disputes_by_created_due
    on disputes (tenant_id, created_at desc, id desc, due_time);
drop index if exists disputes_by_created;
