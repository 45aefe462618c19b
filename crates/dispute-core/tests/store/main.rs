//! Store tests for the dispute repository against real PostgreSQL: every test gets a fresh
//! database with the migrations applied (`#[sqlx::test]`, `DATABASE_URL` at run time). One
//! module per concern; what they share is here.
#![allow(clippy::unwrap_used)]

mod deadline_sweep;
mod disputes;
mod events;
mod evidence_texts;
mod history;
mod idempotency;
mod notifications;
mod query_plans;
mod retention;
mod sequencer_stall;
mod webhook_claims;

use chrono::{DateTime, Utc};
use dispute_core::domain::{
    Dispute, EnumInput, Network, NewDispute, NewDisputeDraft, Reason, Side,
};
use dispute_core::store::disputes::insert_dispute;
use sqlx::PgConnection;

const TENANT: &str = "ten_alpha";
const OTHER_TENANT: &str = "ten_beta";

/// A valid merchant-side draft; tests override what they care about.
fn merchant_draft() -> NewDisputeDraft {
    NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Merchant)),
        amount: 1_000,
        currency: "usd".into(),
        network: Some(EnumInput::Known(Network::Visa)),
        reason: Some(EnumInput::Known(Reason::Fraudulent)),
        ..Default::default()
    }
}

fn parse(draft: NewDisputeDraft) -> NewDispute {
    NewDispute::parse(draft, Utc::now()).unwrap()
}

/// Inserts a minimal merchant dispute with `id`.
async fn insert_plain(conn: &mut PgConnection, tenant_id: &str, id: &str) {
    insert_dispute(conn, tenant_id, id, &parse(merchant_draft()))
        .await
        .unwrap();
}

fn ids(disputes: &[Dispute]) -> Vec<&str> {
    disputes.iter().map(|d| d.id.as_str()).collect()
}

async fn set_created_at(conn: &mut PgConnection, table: &str, id: &str, at: DateTime<Utc>) {
    sqlx::query(&format!("update {table} set created_at = $2 where id = $1"))
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .unwrap();
}
