//! `sqlx::migrate!` embeds the migrations at compile time but does not notice a new file.

fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
}
