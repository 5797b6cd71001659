//! `smpp-load`: binds to an SMSC and sends `submit_sm` as fast as its windows allow, to measure
//! what the fake SMSC alone can take (`bench/smpp.sh`). Prints the answered submits per second
//! of the whole run; every submit carries the same short GSM-7 text to the same destination.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::StreamExt;
use rusmpp::{
    pdus::{BindTransmitter, SubmitSm},
    tokio_codec::CommandCodec,
    types::{COctetString, OctetString},
    values::{EsmClass, InterfaceVersion, Npi, RegisteredDelivery, Ton},
    Command, CommandId, CommandStatus, Pdu,
};
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::Semaphore};
use tokio_util::{
    bytes::BytesMut,
    codec::{Encoder, FramedRead},
};

/// Load generator for an SMPP 3.4 SMSC.
#[derive(Parser)]
struct Args {
    /// The SMSC's address.
    #[arg(long, default_value = "127.0.0.1:2775")]
    connect: SocketAddr,
    /// The account's system_id.
    #[arg(long)]
    system_id: String,
    /// The account's password.
    #[arg(long)]
    password: String,
    /// Transmitter binds to open.
    #[arg(long, default_value_t = 4)]
    binds: usize,
    /// Submits per bind sent and not yet answered.
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Seconds to send for.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let answered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut binds = Vec::new();
    for _ in 0..args.binds {
        let stream = TcpStream::connect(args.connect).await?;
        stream.set_nodelay(true)?;
        binds.push(bind(stream, &args).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = binds
        .into_iter()
        .map(|(frames, write)| {
            let (answered, refused, stop) = (answered.clone(), refused.clone(), stop.clone());
            tokio::spawn(run(frames, write, args.window, answered, refused, stop))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let total = answered.load(Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    println!(
        "{:.0} submits/s ({total} answered, {} refused, {} binds x window {}, {elapsed:.1} s)",
        total as f64 / elapsed,
        refused.load(Ordering::Relaxed),
        args.binds,
        args.window
    );
    Ok(())
}

type Frames = FramedRead<tokio::net::tcp::OwnedReadHalf, CommandCodec>;

fn c<const MAX: usize>(s: &str) -> std::io::Result<COctetString<1, MAX>> {
    COctetString::from_string(s.to_string()).map_err(std::io::Error::other)
}

/// Open one transmitter bind.
async fn bind(
    stream: TcpStream,
    args: &Args,
) -> std::io::Result<(Frames, tokio::net::tcp::OwnedWriteHalf)> {
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, CommandCodec::new());
    let pdu = Pdu::from(
        BindTransmitter::builder()
            .system_id(c(&args.system_id)?)
            .password(c(&args.password)?)
            .system_type(COctetString::empty())
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .build(),
    );
    let mut buf = BytesMut::new();
    let _ = CommandCodec::new().encode(&Command::new(CommandStatus::EsmeRok, 1, pdu), &mut buf);
    write.write_all(&buf).await?;
    match frames.next().await {
        Some(Ok(answer))
            if answer.id() == CommandId::BindTransmitterResp
                && answer.status() == CommandStatus::EsmeRok =>
        {
            Ok((frames, write))
        }
        other => Err(std::io::Error::other(format!("bind refused: {other:?}"))),
    }
}

/// Keep `window` submits outstanding on one bind until told to stop.
async fn run(
    mut frames: Frames,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    window: usize,
    answered: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let submit = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr_npi(Npi::Unknown)
        .source_addr(COctetString::from_string("BENCH".to_string()).expect("short"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_string("819012345678".to_string()).expect("short"))
        .esm_class(EsmClass::from(0))
        .registered_delivery(RegisteredDelivery::from(0))
        .short_message(
            OctetString::from_vec(b"Your appointment is confirmed for 12/1 10:00.".to_vec())
                .expect("short"),
        )
        .build();
    let pdu = Pdu::from(submit);
    let credits = Arc::new(Semaphore::new(window));
    let reader = {
        let credits = credits.clone();
        tokio::spawn(async move {
            while let Some(Ok(command)) = frames.next().await {
                if command.id() == CommandId::SubmitSmResp {
                    if command.status() == CommandStatus::EsmeRok {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    credits.add_permits(1);
                }
            }
        })
    };
    let mut codec = CommandCodec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut sequence = 2u32;
    while !stop.load(Ordering::Relaxed) {
        // Wait for one free slot, then fill every free slot in one write.
        let Ok(permit) = credits.acquire().await else {
            break;
        };
        permit.forget();
        let mut n = 1 + credits.available_permits();
        if let Ok(more) = credits.try_acquire_many(n as u32 - 1) {
            more.forget();
        } else {
            n = 1;
        }
        for _ in 0..n {
            let command = Command::new(CommandStatus::EsmeRok, sequence, pdu.clone());
            sequence = sequence.wrapping_add(1).max(2);
            let _ = codec.encode(&command, &mut buf);
        }
        if write.write_all(&buf).await.is_err() {
            break;
        }
        buf.clear();
    }
    reader.abort();
}
