//! The fake over real TCP with a pipelining client: every submit answered once, with its own id,
//! and the rate printed (`cargo test -p fake-smsc --release -- --nocapture`).

use std::{collections::HashSet, time::Instant};

use fake_smsc::{FakeSmsc, Options, Receipts};
use futures_util::{SinkExt, StreamExt};
use rusmpp::{
    pdus::{BindTransceiver, SubmitSm},
    tokio_codec::CommandCodec,
    types::{COctetString, OctetString},
    values::{InterfaceVersion, Npi, Ton},
    Command, CommandStatus, Pdu,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const SUBMITS: u32 = 20_000;
const WINDOW: u32 = 100;

fn c<const N: usize>(s: &str) -> COctetString<1, N> {
    COctetString::from_string(s.to_string()).unwrap()
}

#[tokio::test]
async fn a_pipelined_client_gets_every_submit_answered_with_its_own_id() {
    let smsc = FakeSmsc::start(Options {
        receipts: Receipts::None,
        record: false,
        ..Options::new("bench", "pw")
    })
    .await
    .unwrap();
    let stream = TcpStream::connect(smsc.addr()).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut framed = Framed::new(stream, CommandCodec::new());
    let bind = BindTransceiver::builder()
        .system_id(c("bench"))
        .password(c("pw"))
        .interface_version(InterfaceVersion::Smpp3_4)
        .build();
    framed
        .send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .unwrap();
    let resp = framed.next().await.unwrap().unwrap();
    assert_eq!(resp.status(), CommandStatus::EsmeRok);

    let submit = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr(c("TSUNAGI"))
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(c("819012345678"))
        .short_message(OctetString::from_vec(b"hello".to_vec()).unwrap())
        .build();
    let started = Instant::now();
    let (mut sent, mut answered) = (0u32, 0u32);
    let mut ids = HashSet::new();
    while answered < SUBMITS {
        while sent < SUBMITS && sent - answered < WINDOW {
            sent += 1;
            let cmd = Command::new(CommandStatus::EsmeRok, sent + 1, Pdu::from(submit.clone()));
            framed.feed(cmd).await.unwrap();
        }
        SinkExt::<Command>::flush(&mut framed).await.unwrap();
        let resp = framed.next().await.unwrap().unwrap();
        assert_eq!(resp.status(), CommandStatus::EsmeRok);
        if let Some(Pdu::SubmitSmResp(r)) = resp.pdu() {
            assert!(ids.insert(r.message_id().as_str().to_string()));
        }
        answered += 1;
    }
    let rate = SUBMITS as f64 / started.elapsed().as_secs_f64();
    println!("{SUBMITS} submits answered at {rate:.0}/s");
    assert_eq!(ids.len(), SUBMITS as usize);
    assert_eq!(smsc.submit_count(), SUBMITS as u64);
}
