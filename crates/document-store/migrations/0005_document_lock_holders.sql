-- Who holds each document's lock: '' for a lock that is never released (LockDocuments
-- without a lock_id, and every lock taken before lock ids existed), otherwise the lock_id
-- of a submission (dispute-core releases it with UnlockDocuments if the submission does
-- not happen). lock_time stays set while any holder remains.
alter table documents add column lock_holders text[] not null default '{}';
update documents set lock_holders = '{""}' where lock_time is not null;
