-- History paging (issue 11, point 11). Every history entry gets its place in its dispute's
-- history: 1 for the first entry, then one more for each entry appended (under the dispute's
-- row lock). Paging (ListDisputeHistory) walks this order, which new entries only extend, and
-- the newest entry's ordinal is the history's length, so reading the latest entries and the
-- total takes one index range scan instead of the whole history.
alter table dispute_actions add column ordinal bigint;

update dispute_actions a
   set ordinal = numbered.ordinal
  from (select tenant_id, id,
               row_number() over (partition by tenant_id, dispute_id order by created_at, id)
                   as ordinal
          from dispute_actions) numbered
 where a.tenant_id = numbered.tenant_id and a.id = numbered.id;

alter table dispute_actions alter column ordinal set not null;

drop index dispute_actions_by_dispute;
create unique index dispute_actions_by_ordinal
    on dispute_actions (tenant_id, dispute_id, ordinal);
