//! The handset side of SMS text: GSM-7 (unpacked, one septet a byte, or packed), IA5 and UCS-2
//! payloads, and the concatenation UDH that joins parts.

/// The GSM 03.38 basic table in code order, less the escape code 0x1B.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table: (code after the escape, character).
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

const ESCAPE: u8 = 0x1B;

/// The GSM-7 character at `code` of the basic table.
fn basic(code: u8) -> Option<char> {
    // The table string skips the escape code, so codes above it sit one place earlier.
    let index = match code {
        ESCAPE => return None,
        c if c > ESCAPE => c as usize - 1,
        c => c as usize,
    };
    GSM7_BASIC.chars().nth(index)
}

/// Decode unpacked GSM-7 septets; an unknown code reads as '?'.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut bytes = septets.iter().copied();
    while let Some(b) = bytes.next() {
        let c = if b == ESCAPE {
            bytes
                .next()
                .and_then(|code| GSM7_EXTENSION.iter().find(|(c, _)| *c == code))
                .map(|(_, ch)| *ch)
        } else {
            basic(b)
        };
        text.push(c.unwrap_or('?'));
    }
    text
}

/// Encode `text` as unpacked GSM-7 septets, or `None` if a character is not in the alphabet.
pub fn gsm7_encode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if let Some(index) = GSM7_BASIC.chars().position(|b| b == c) {
            let code = index as u8;
            out.push(if code >= ESCAPE { code + 1 } else { code });
        } else {
            let (code, _) = GSM7_EXTENSION.iter().find(|(_, ch)| *ch == c)?;
            out.extend([ESCAPE, *code]);
        }
    }
    Some(out)
}

/// Big-endian UTF-16 bytes of `text`.
pub fn ucs2_encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decode big-endian UTF-16; unpaired surrogates become U+FFFD.
pub fn ucs2_decode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Decode a payload sent with `data_coding` (GSM-7 unpacked).
pub fn decode(data_coding: u8, payload: &[u8]) -> String {
    match data_coding {
        0x01 => ia5_decode(payload),
        0x08 => ucs2_decode(payload),
        _ => gsm7_decode(payload),
    }
}

/// Decode IA5 (ASCII); a byte above 0x7F, which IA5 has not, reads as '?'.
pub fn ia5_decode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b.is_ascii() { char::from(b) } else { '?' })
        .collect()
}

/// The septets in packed GSM-7 user data (3GPP TS 23.038 §6.1.2.1), after `fill` bits that put
/// the first septet on a septet boundary past a UDH. Written from the standard's bit picture:
/// bit `k` of the stream is bit `k % 8` of octet `k / 8`, septets take 7 bits least
/// significant first. Seven spare bits at the end hold a CR as padding (§6.1.2.3.1), dropped.
pub fn gsm7_unpack(packed: &[u8], fill: u8) -> Vec<u8> {
    let bit = |k: usize| (packed[k / 8] >> (k % 8)) & 1;
    let usable = (packed.len() * 8).saturating_sub(fill as usize);
    let mut septets = Vec::with_capacity(usable / 7);
    let mut k = fill as usize;
    while k + 7 <= packed.len() * 8 {
        septets.push((0..7).fold(0u8, |septet, i| septet | bit(k + i) << i));
        k += 7;
    }
    if usable.is_multiple_of(7) && septets.last() == Some(&0x0D) {
        septets.pop();
    }
    septets
}

/// Fill bits after a UDH of `udh_len` octets (length octet included) up to a septet boundary.
pub fn fill_after(udh_len: usize) -> u8 {
    let bits = udh_len * 8;
    (bits.div_ceil(7) * 7 - bits) as u8
}

/// A concatenation header's reference, total and sequence (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Concat {
    /// Reference shared by the parts of one message.
    pub reference: u16,
    /// Parts in the message.
    pub total: u8,
    /// This part's place.
    pub seq: u8,
}

/// Split a payload that starts with a UDH into (UDH, rest); `None` if the length byte lies.
pub fn split_udh(short_message: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = *short_message.first()? as usize;
    (short_message.len() > len).then(|| short_message.split_at(len + 1))
}

/// The concatenation element of a UDH (8-bit `00` or 16-bit `08` reference), if it has one.
pub fn concat_of(udh: &[u8]) -> Option<Concat> {
    let mut elements = udh.get(1..)?;
    while let [iei, len, rest @ ..] = elements {
        let len = *len as usize;
        let data = rest.get(..len)?;
        match (*iei, data) {
            (0x00, [reference, total, seq]) => {
                return Some(Concat {
                    reference: *reference as u16,
                    total: *total,
                    seq: *seq,
                })
            }
            (0x08, [hi, lo, total, seq]) => {
                return Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    seq: *seq,
                })
            }
            _ => elements = &rest[len..],
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_round_trips_basic_and_extension_characters() {
        let text = "Hello @£ {x} [y] ~€ Ü";
        let septets = gsm7_encode(text).unwrap();
        assert_eq!(septets[0], b'H');
        assert_eq!(gsm7_encode("@").unwrap(), [0]);
        assert_eq!(gsm7_encode("€").unwrap(), [0x1B, 0x65]);
        assert_eq!(gsm7_encode("É").unwrap(), [0x1F]);
        assert_eq!(gsm7_decode(&septets), text);
        assert_eq!(gsm7_encode("あ"), None);
    }

    #[test]
    fn packed_gsm7_reads_the_standards_example_and_fill_bits() {
        // "hellohello", the example every implementation of §6.1.2.1 is checked against.
        let packed = [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37];
        assert_eq!(gsm7_unpack(&packed, 0), b"hellohello");
        assert_eq!(gsm7_unpack(&[0x82], 1), [0x41]);
        assert_eq!((fill_after(0), fill_after(6), fill_after(7)), (0, 1, 0));
        // Seven septets and a CR in the spare bits: the CR is padding.
        let seven = [0x31, 0xD9, 0x8C, 0x56, 0xB3, 0xDD, 0x1A];
        assert_eq!(gsm7_unpack(&seven, 0), b"1234567");
    }

    #[test]
    fn ia5_is_ascii() {
        assert_eq!(decode(0x01, b"@{x}"), "@{x}");
        assert_eq!(ia5_decode(&[b'a', 0xE9]), "a?");
    }

    #[test]
    fn concatenation_headers_are_read_with_either_reference_size() {
        let payload = [5, 0, 3, 0x42, 3, 2, b'a'];
        let (udh, rest) = split_udh(&payload).unwrap();
        assert_eq!(rest, b"a");
        assert_eq!(
            concat_of(udh),
            Some(Concat {
                reference: 0x42,
                total: 3,
                seq: 2
            })
        );
        let wide = [6, 8, 4, 1, 2, 2, 1];
        assert_eq!(concat_of(&wide).unwrap().reference, 0x0102);
        assert_eq!(split_udh(&[9, 1]), None);
    }
}
