// `sqlx::migrate!` embeds the migrations at compile time, but cargo does not know the
// folder is an input: without this, a migration added or edited after the last build is
// missing from the binary until some source file of the crate changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
