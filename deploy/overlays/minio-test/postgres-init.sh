#!/bin/bash
# Sourced by the postgres image's entrypoint on first start (empty data dir),
# which already runs with `set -e`. One role and one database per service,
# each role owning its database (so migrations can create tables in `public`
# under PostgreSQL 15's stricter defaults).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v dc_pw="$DISPUTE_CORE_DB_PASSWORD" \
  -v ds_pw="$DOCUMENT_STORE_DB_PASSWORD" <<'SQL'
CREATE ROLE dispute_core LOGIN PASSWORD :'dc_pw';
CREATE DATABASE disputes OWNER dispute_core;
CREATE ROLE document_store LOGIN PASSWORD :'ds_pw';
CREATE DATABASE documents OWNER document_store;
SQL
