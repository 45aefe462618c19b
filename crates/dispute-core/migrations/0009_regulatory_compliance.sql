-- Issue 11, points 2 and 7: the issuer side's deadline breaches (I14) and why a dispute was
-- closed by its tenant.
alter table disputes
    -- every issuer-side deadline recorded as passed, oldest first:
    -- [{"deadline": "decision_due", "due": "2026-06-12T00:00:00Z", "flagged": true}, ...];
    -- the flagged ones are the API's overdue flag (cleared when someone acts)
    add column deadline_breaches jsonb not null default '[]',
    -- CLOSE on the issuer side: 'cardholder_withdrew'; null otherwise
    add column close_reason text;

-- `overdue` now mirrors "a breach is flagged". The old mark never cleared and did not say
-- which date passed: clear it and let the sweeper record the breaches of open disputes again.
update disputes
   set overdue = false,
       next_deadline = case
           when status in ('needs_response', 'under_review') then now()
           else next_deadline
       end
 where overdue;
