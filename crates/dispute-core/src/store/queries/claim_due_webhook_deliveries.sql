-- The webhook worker's claim (store::webhooks::claim_due): $1 owner, $2 lease in ms,
-- $3 limit, $4 attempts in flight per endpoint, $5 attempts in flight per tenant on this
-- replica. Round-robin: every tenant's first pick, then every tenant's second; a tenant's
-- picks go through its endpoints' oldest due deliveries before their next ones.

-- Endpoints with pending deliveries: a skip scan of webhook_deliveries_pending_by_endpoint,
-- one index probe per endpoint however long its backlog.
with recursive pending_endpoints (tenant_id, endpoint_id) as (
    (select tenant_id, endpoint_id from webhook_deliveries
      where status = 'pending'
      order by tenant_id, endpoint_id
      limit 1)
    union all
    select next.tenant_id, next.endpoint_id
      from pending_endpoints p
      cross join lateral (
        select tenant_id, endpoint_id from webhook_deliveries
         where status = 'pending'
           and (tenant_id, endpoint_id) > (p.tenant_id, p.endpoint_id)
         order by tenant_id, endpoint_id
         limit 1) next
),
-- Attempts in flight: live leases, per endpoint (every replica) and this replica's.
leased as (
    select tenant_id, endpoint_id, count(*) as in_flight,
           count(*) filter (where lease_owner = $1) as mine
      from webhook_deliveries
     where status = 'pending' and lease_owner is not null and lease_expires_at >= now()
     group by tenant_id, endpoint_id
),
-- Free slots per endpoint: none while its breaker is open, one probe while half-open.
endpoint_slots as (
    select e.tenant_id, e.id as endpoint_id,
           (case when e.breaker_open_until is null then $4 else 1 end)
               - coalesce(l.in_flight, 0) as slots
      from pending_endpoints p
      join webhook_endpoints e on e.tenant_id = p.tenant_id and e.id = p.endpoint_id
      left join leased l on l.tenant_id = e.tenant_id and l.endpoint_id = e.id
     where e.enabled and e.deleted_at is null
       and (e.breaker_open_until is null or e.breaker_open_until <= now())
),
tenant_slots as (
    select t.tenant_id,
           $5 - coalesce((select sum(l.mine) from leased l where l.tenant_id = t.tenant_id), 0)
               as slots
      from (select distinct tenant_id from endpoint_slots) t
),
-- Each endpoint's oldest due deliveries, as many as it has free slots.
candidates as (
    select d.tenant_id, d.id, d.next_attempt_at,
           row_number() over (partition by d.tenant_id, d.endpoint_id
                              order by d.next_attempt_at) as endpoint_round
      from endpoint_slots s
      cross join lateral (
        select tenant_id, id, endpoint_id, next_attempt_at from webhook_deliveries
         where tenant_id = s.tenant_id and endpoint_id = s.endpoint_id
           and status = 'pending' and next_attempt_at <= now()
           and (lease_expires_at is null or lease_expires_at < now())
         order by next_attempt_at
         limit greatest(s.slots, 0)) d
),
ranked as (
    select tenant_id, id, next_attempt_at,
           row_number() over (partition by tenant_id
                              order by endpoint_round, next_attempt_at) as tenant_round
      from candidates
),
picked as (
    select r.tenant_id, r.id
      from ranked r
      join tenant_slots t on t.tenant_id = r.tenant_id
     where r.tenant_round <= t.slots
     order by r.tenant_round, r.next_attempt_at
     limit $3
),
-- Lock them; a row another replica just took is skipped (and rechecked: not leased).
due as (
    select d.tenant_id, d.id
      from webhook_deliveries d
      join picked p on p.tenant_id = d.tenant_id and p.id = d.id
     where d.status = 'pending' and d.next_attempt_at <= now()
       and (d.lease_expires_at is null or d.lease_expires_at < now())
       for update of d skip locked
)
update webhook_deliveries d
   set lease_owner = $1,
       lease_expires_at = now() + make_interval(secs => $2::double precision / 1000)
  from due
 where d.tenant_id = due.tenant_id and d.id = due.id
returning d.tenant_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.attempt_count
