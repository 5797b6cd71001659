//! `fake-smsc`: the fake SMSC on a fixed address, printing accepted submits per second.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use fake_smsc::{FakeSmsc, Options, Receipts};

/// A fake SMSC speaking SMPP 3.4, for benchmarks and manual runs.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2775")]
    listen: SocketAddr,
    /// The account's system_id.
    #[arg(long)]
    system_id: String,
    /// The account's password.
    #[arg(long)]
    password: String,
    /// What delivery receipts carry: tlv, text, both, none, decimal-text, payload or data-sm.
    #[arg(long, default_value = "tlv")]
    receipts: Receipts,
    /// Milliseconds between a submit and its receipt.
    #[arg(long, default_value_t = 0)]
    receipt_delay_ms: u64,
    /// Speak TLS, writing the PEM of the CA that issued its certificate to this file (for
    /// tsunagi's `tls_ca_file`).
    #[arg(long)]
    tls_ca_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let smsc = FakeSmsc::start(Options {
        listen: args.listen,
        receipts: args.receipts,
        receipt_delay: Duration::from_millis(args.receipt_delay_ms),
        // Nothing reads them back, and a long run would hold every submit in memory.
        record: false,
        tls: args.tls_ca_out.is_some(),
        ..Options::new(&args.system_id, &args.password)
    })
    .await?;
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, smsc.tls_ca_pem()) {
        std::fs::write(path, pem)?;
    }
    println!("fake-smsc listening on {}", smsc.addr());
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let total = smsc.submit_count();
        if total != last {
            println!(
                "{} submits/s ({total} total, {} throttled, {} binds)",
                total - last,
                smsc.throttled_count(),
                smsc.bind_count()
            );
            last = total;
        }
    }
}
