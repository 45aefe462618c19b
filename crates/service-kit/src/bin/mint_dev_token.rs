//! Mints a development token: `mint-dev-token --tenant acme` prints a JWT signed with
//! AUTH_JWT_SECRET that grants every scope (or those given with --scope) for a day;
//! --issuer and --audience add `iss` and `aud` for services that check them.

use clap::Parser;
use secrecy::SecretString;
use service_kit::auth::{Scope, dev_claims, mint_claims};

#[derive(Parser)]
#[command(about = "mint a development bearer token for the dispute platform")]
struct Args {
    /// Tenant the token acts for ([A-Za-z0-9_-], at most 64 characters).
    #[arg(long)]
    tenant: String,
    /// Scope to grant; repeat for several. Default: every scope.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Lifetime in seconds (the services accept at most their --jwt-max-lifetime-secs, a day
    /// by default).
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: i64,
    /// Subject (who the token is for).
    #[arg(long, default_value = "dev")]
    subject: String,
    /// `iss` of the token, for services started with --jwt-issuer.
    #[arg(long)]
    issuer: Option<String>,
    /// `aud` of the token, for services started with --jwt-audience.
    #[arg(long)]
    audience: Option<String>,
    /// HS256 key shared with the services (at least 32 bytes).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    jwt_secret: SecretString,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        service_kit::auth::is_valid_tenant(&args.tenant),
        "--tenant must be 1 to 64 characters of [A-Za-z0-9_-]"
    );
    service_kit::auth::TokenVerifier::new(&args.jwt_secret)?;
    let scopes: Vec<String> = if args.scopes.is_empty() {
        Scope::ALL.iter().map(|s| s.as_str().to_owned()).collect()
    } else {
        args.scopes
    };
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let claims = service_kit::auth::Claims {
        iss: args.issuer,
        aud: args.audience,
        ..dev_claims(
            &args.subject,
            Some(&args.tenant),
            &scopes,
            chrono::Duration::seconds(args.ttl_secs),
        )
    };
    let token = mint_claims(&args.jwt_secret, &claims)?;
    println!("{token}");
    Ok(())
}
