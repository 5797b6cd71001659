//! `submit_sm` PDUs for one message: addresses with the right TON/NPI, and the parts
//! `payload` makes (GSM-7, IA5 or UCS-2, with our concatenation UDH when there are several).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusmpp::{
    pdus::SubmitSm,
    types::{COctetString, EmptyOrFullCOctetString, OctetString},
    values::{EsmClass, Npi, RegisteredDelivery, Ton},
};

use super::payload;
use crate::{
    config::SmppConfig,
    domain::phone::SenderId,
    providers::{OutboundSms, SendError},
};

/// esm_class bit saying the payload starts with a UDH.
const UDHI: u8 = 0x40;

/// An address with its type of number and numbering plan.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

/// The source address for a sender id: numbers international without '+', 0005 short codes
/// as the account is configured, names alphanumeric.
pub(super) fn source(sender: &str, config: &SmppConfig) -> Result<Address, SendError> {
    let parsed = SenderId::parse(sender)
        .map_err(|_| SendError::Permanent(format!("not a sender id SMPP can carry: {sender}")))?;
    Ok(match parsed {
        SenderId::Number(n) => international(n.e164()),
        SenderId::ShortCode(code) => Address {
            ton: config.short_code_ton,
            npi: config.short_code_npi,
            addr: code,
        },
        SenderId::Alphanumeric(name) => Address {
            ton: 5,
            npi: 0,
            addr: name,
        },
    })
}

/// An E.164 number as TON 1 / NPI 1 digits.
pub(super) fn international(e164: &str) -> Address {
    Address {
        ton: 1,
        npi: 1,
        addr: e164.trim_start_matches('+').to_string(),
    }
}

/// Shortest validity period given: an SMSC may drop a message at once when given less than it
/// takes to route it, and the dispatcher already holds back messages whose time has run out.
const MIN_VALIDITY: Duration = Duration::from_secs(60);
/// Longest relative validity period written: days beyond a month are read differently by
/// SMSCs (SMPP counts months and years apart), and no expiry tsunagi accepts comes near it.
const MAX_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// `left` in SMPP 3.4's relative time format (§7.1.1.2, `YYMMDDhhmmsstnnR`, tenths and
/// offset zero), within `MIN_VALIDITY` and `MAX_VALIDITY`.
pub(super) fn relative_time(left: Duration) -> String {
    let s = left.clamp(MIN_VALIDITY, MAX_VALIDITY).as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    format!("0000{days:02}{hours:02}{minutes:02}{seconds:02}000R")
}

/// One `submit_sm` per part, asking for a delivery receipt; `reference` ties the parts together.
/// A message that expires has the time it has left at `now` as its validity period, so the SMSC
/// drops it rather than deliver it late.
pub(super) fn build(
    sms: &OutboundSms,
    config: &SmppConfig,
    reference: u8,
    now: DateTime<Utc>,
) -> Result<Vec<SubmitSm>, SendError> {
    let validity_period = match sms.time_left(now) {
        Some(left) => EmptyOrFullCOctetString::from_string(relative_time(left))
            .map_err(|e| SendError::Permanent(format!("validity period does not fit SMPP: {e}")))?,
        None => EmptyOrFullCOctetString::empty(),
    };
    let source = source(&sms.from, config)?;
    let dest = international(sms.to.e164());
    let payload::Payloads { data_coding, parts } = payload::payloads(&sms.body, config, reference)?;
    let concatenated = parts.len() > 1;
    parts
        .into_iter()
        .map(|short_message| {
            Ok(SubmitSm::builder()
                .source_addr_ton(Ton::from(source.ton))
                .source_addr_npi(Npi::from(source.npi))
                .source_addr(c_string(&source.addr, "source address")?)
                .dest_addr_ton(Ton::from(dest.ton))
                .dest_addr_npi(Npi::from(dest.npi))
                .destination_addr(c_string(&dest.addr, "destination address")?)
                .esm_class(EsmClass::from(if concatenated { UDHI } else { 0 }))
                .registered_delivery(RegisteredDelivery::from(1))
                .validity_period(validity_period.clone())
                .data_coding(data_coding)
                .short_message(OctetString::from_vec(short_message).map_err(|e| {
                    SendError::Permanent(format!("a part does not fit a submit_sm: {e}"))
                })?)
                .build())
        })
        .collect()
}

fn c_string<const MAX: usize>(text: &str, what: &str) -> Result<COctetString<1, MAX>, SendError> {
    COctetString::from_string(text.to_string())
        .map_err(|e| SendError::Permanent(format!("{what} does not fit SMPP: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ids::MessageId, phone::PhoneNumber};

    fn config() -> SmppConfig {
        let text = r#"
[delivery]
provider = "smpp"
[providers.smpp]
host = "127.0.0.1"
system_id = "t"
password = "p"
short_code_ton = 6
short_code_npi = 9
"#;
        crate::config::Config::parse(text, |_| None)
            .unwrap()
            .providers
            .smpp
            .unwrap()
    }

    fn sms(from: &str, body: &str) -> OutboundSms {
        OutboundSms::new(
            MessageId::new(),
            PhoneNumber::parse("090-1234-5678").unwrap(),
            from.into(),
            body.into(),
        )
    }

    #[test]
    fn numbers_are_international_without_plus_names_alphanumeric_short_codes_as_configured() {
        let c = config();
        let to = |ton, npi, addr: &str| Address {
            ton,
            npi,
            addr: addr.into(),
        };
        assert_eq!(source("+81312345678", &c).unwrap(), to(1, 1, "81312345678"));
        assert_eq!(source("09011112222", &c).unwrap(), to(1, 1, "819011112222"));
        assert_eq!(source("Tsunagi", &c).unwrap(), to(5, 0, "Tsunagi"));
        assert_eq!(source("0005123456", &c).unwrap(), to(6, 9, "0005123456"));
        assert!(matches!(
            source("not a sender!", &c),
            Err(SendError::Permanent(_))
        ));
    }

    #[test]
    fn a_short_gsm7_message_is_one_plain_submit_asking_for_a_receipt() {
        let pdus = build(&sms("Tsunagi", "Hi @ home"), &config(), 9, Utc::now()).unwrap();
        assert_eq!(pdus.len(), 1);
        let p = &pdus[0];
        assert_eq!(p.destination_addr.as_str(), "819012345678");
        assert_eq!(
            (u8::from(p.dest_addr_ton), u8::from(p.dest_addr_npi)),
            (1, 1)
        );
        assert_eq!(u8::from(p.esm_class), 0);
        assert_eq!(u8::from(p.data_coding), 0);
        assert_eq!(u8::from(p.registered_delivery), 1);
        assert_eq!(p.short_message().as_ref(), b"Hi \x00 home");
        assert!(
            p.validity_period.is_empty(),
            "a validity period without an expiry"
        );
    }

    #[test]
    fn the_validity_period_is_the_time_left_relative_rounded_up_and_at_least_a_minute() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(relative_time(minutes(5)), "000000000500000R");
        assert_eq!(relative_time(minutes(26 * 60)), "000001020000000R");
        assert_eq!(relative_time(minutes(72 * 60)), "000003000000000R");
        assert_eq!(relative_time(Duration::from_secs(3725)), "000000010205000R");
        assert_eq!(relative_time(Duration::from_secs(10)), "000000000100000R");
        assert_eq!(relative_time(Duration::ZERO), "000000000100000R");
        let now = Utc::now();
        let mut expiring = sms("Tsunagi", "あなたのコードは 123456 です");
        expiring.expires_at = Some(now + chrono::Duration::milliseconds(299_001));
        let pdus = build(&expiring, &config(), 1, now).unwrap();
        assert_eq!(
            pdus[0].validity_period.to_string(),
            "000000000500000R",
            "299.001 s left is rounded up to 5 min"
        );
    }

    #[test]
    fn a_long_ucs2_message_is_parts_with_our_udh_and_the_udhi_bit() {
        let body = format!("{}😀{}", "あ".repeat(66), "い".repeat(80));
        let pdus = build(&sms("0005123456", &body), &config(), 0x33, Utc::now()).unwrap();
        assert_eq!(pdus.len(), 3);
        let mut joined = Vec::new();
        for (i, p) in pdus.iter().enumerate() {
            assert_eq!(u8::from(p.esm_class), 0x40);
            assert_eq!(u8::from(p.data_coding), 8);
            let bytes = p.short_message().as_ref();
            assert_eq!(&bytes[..6], &[5, 0, 3, 0x33, 3, i as u8 + 1]);
            assert!(bytes.len() <= 140);
            joined.extend_from_slice(&bytes[6..]);
        }
        let units: Vec<u16> = joined
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), body);
    }
}
