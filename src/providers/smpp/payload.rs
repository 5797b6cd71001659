//! What each part's `short_message` holds, by the account's `gsm_data_coding` and `gsm_packed`:
//! the data_coding and the bytes, our concatenation UDH first when there are several parts.

use rusmpp::values::DataCoding;

use super::{pack, udh};
use crate::{
    config::SmppConfig,
    domain::segment::{self, Encoding},
    providers::SendError,
};

/// A body's parts as the account sends them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Payloads {
    /// The data_coding every part carries.
    pub data_coding: DataCoding,
    /// Each part's `short_message`, with the UDH when there are several.
    pub parts: Vec<Vec<u8>>,
}

/// `body`'s parts for `config`'s account; `reference` ties the parts together.
pub(super) fn payloads(
    body: &str,
    config: &SmppConfig,
    reference: u8,
) -> Result<Payloads, SendError> {
    let (encoding, parts) = segment::encoded_parts(body);
    let (data_coding, parts, packed) = match encoding {
        Encoding::Ucs2 => (DataCoding::Ucs2, parts, false),
        Encoding::Gsm7 if config.gsm_data_coding == 0 => {
            (DataCoding::McSpecific, parts, config.gsm_packed)
        }
        // IA5 is ASCII: the SMSC turns it into GSM-7 for the air, so the parts split as GSM-7
        // does. A GSM-7 character outside ASCII (£ é Δ € …) has no IA5 byte, so such a body goes
        // as UCS-2, split by its rules (into more parts than GSM-7 would have taken).
        Encoding::Gsm7 if body.is_ascii() => (
            DataCoding::Ia5,
            segment::split(body)
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            false,
        ),
        Encoding::Gsm7 => (DataCoding::Ucs2, segment::ucs2_parts(body), false),
    };
    let total = u8::try_from(parts.len()).map_err(|_| {
        SendError::Permanent(format!("{} parts are more than SMS can join", parts.len()))
    })?;
    let parts = parts
        .into_iter()
        .enumerate()
        .map(|(i, user_data)| {
            let header = (total > 1).then(|| udh::header(reference, total, i as u8 + 1));
            let header = header.as_ref().map_or(&[][..], |h| &h[..]);
            let user_data = match packed {
                true => pack::pack(&user_data, pack::fill_bits(header.len())),
                false => user_data,
            };
            [header, &user_data].concat()
        })
        .collect();
    Ok(Payloads { data_coding, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(extra: &str) -> SmppConfig {
        let text = format!(
            "[delivery]\nprovider = \"smpp\"\n[providers.smpp]\nhost = \"h\"\nsystem_id = \"t\"\n\
             password = \"p\"\n{extra}"
        );
        crate::config::Config::parse(&text, |_| None)
            .unwrap()
            .providers
            .smpp
            .unwrap()
    }

    #[test]
    fn by_default_gsm7_goes_unpacked_as_data_coding_0() {
        let p = payloads("Hi @ home", &account(""), 1).unwrap();
        assert_eq!(p.data_coding, DataCoding::McSpecific);
        assert_eq!(p.parts, [b"Hi \x00 home".to_vec()]);
    }

    #[test]
    fn ia5_sends_the_ascii_bytes_split_by_the_gsm7_rules() {
        // 80 escapes are 160 septets: one part. A 161st septet makes two, as GSM-7 splits them.
        let one = payloads(&"{".repeat(80), &account("gsm_data_coding = 1"), 7).unwrap();
        assert_eq!(one.data_coding, DataCoding::Ia5);
        assert_eq!(one.parts, [b"{".repeat(80)]);
        let body = format!("{}a", "{".repeat(80));
        let two = payloads(&body, &account("gsm_data_coding = 1"), 7).unwrap();
        assert_eq!(two.parts.len(), 2);
        assert_eq!(
            two.parts[0],
            [&[5, 0, 3, 7, 2, 1][..], &b"{".repeat(76)].concat()
        );
        assert_eq!(&two.parts[1][6..], format!("{}a", "{".repeat(4)).as_bytes());
    }

    #[test]
    fn ia5_sends_a_body_with_gsm7_characters_ascii_lacks_as_ucs2() {
        // 100 characters: one GSM-7 part, but two UCS-2 parts of 67 and 33.
        let body = format!("Caf{}", "é".repeat(97));
        let p = payloads(&body, &account("gsm_data_coding = 1"), 3).unwrap();
        assert_eq!(p.data_coding, DataCoding::Ucs2);
        assert_eq!(p.parts.len(), 2);
        assert_eq!(p.parts[0].len(), 6 + 67 * 2);
        assert_eq!(&p.parts[0][6..10], &[0, b'C', 0, b'a']);
    }

    #[test]
    fn packed_parts_start_after_the_udh_and_one_fill_bit_and_fit_140_octets() {
        let config = account("gsm_packed = true");
        let single = payloads(&"a".repeat(160), &config, 1).unwrap();
        assert_eq!(single.parts.len(), 1);
        assert_eq!(single.parts[0].len(), 140);
        let body = "b".repeat(153 * 2);
        let long = payloads(&body, &config, 9).unwrap();
        assert_eq!(long.data_coding, DataCoding::McSpecific);
        for (i, part) in long.parts.iter().enumerate() {
            assert_eq!(part.len(), 140);
            assert_eq!(&part[..6], &[5, 0, 3, 9, 2, i as u8 + 1]);
            assert_eq!(pack::unpack(&part[6..], 1), b"b".repeat(153));
        }
    }

    #[test]
    fn ucs2_bodies_are_never_packed() {
        let p = payloads("あい", &account("gsm_packed = true"), 1).unwrap();
        assert_eq!(p.data_coding, DataCoding::Ucs2);
        assert_eq!(p.parts, [vec![0x30, 0x42, 0x30, 0x44]]);
    }
}
