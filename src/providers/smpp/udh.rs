//! Concatenation: the UDH on our long submits, and the one on parts of long mobile-originated
//! messages (joined in the store, which keeps each part until the last comes).

/// Our UDH: one concatenation element with an 8-bit reference (`05 00 03 ref total seq`).
pub(super) fn header(reference: u8, total: u8, seq: u8) -> [u8; 6] {
    [5, 0, 3, reference, total, seq]
}

/// Where one part sits in a concatenated message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Concat {
    /// Shared by the parts of one message.
    pub reference: u16,
    /// Parts in the message.
    pub total: u8,
    /// This part's place, from 1.
    pub seq: u8,
}

impl Concat {
    /// Part `seq` of `total`, or `None` when the numbers cannot be a part's (no parts, a place
    /// beyond them).
    pub fn new(reference: u16, total: u8, seq: u8) -> Option<Concat> {
        let valid = total > 0 && (1..=total).contains(&seq);
        valid.then_some(Concat {
            reference,
            total,
            seq,
        })
    }
}

/// Split a payload that starts with a UDH into its concatenation element (if any) and the text
/// bytes after the header; `None` when the header's lengths do not fit the payload.
pub(super) fn split(short_message: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let len = *short_message.first()? as usize;
    let udh = short_message.get(1..=len)?;
    let payload = &short_message[len + 1..];
    let mut elements = udh;
    while let [iei, elen, rest @ ..] = elements {
        let elen = *elen as usize;
        let data = rest.get(..elen)?;
        let concat = match (*iei, data) {
            (0x00, &[reference, total, seq]) => Some((reference as u16, total, seq)),
            (0x08, &[hi, lo, total, seq]) => Some((u16::from_be_bytes([hi, lo]), total, seq)),
            _ => None,
        };
        if let Some((reference, total, seq)) = concat {
            return Some((Concat::new(reference, total, seq), payload));
        }
        elements = &rest[elen..];
    }
    Some((None, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_header_is_the_eight_bit_concatenation_element() {
        let h = header(0x42, 3, 1);
        assert_eq!(h, [0x05, 0x00, 0x03, 0x42, 0x03, 0x01]);
        let payload = [&h[..], b"abc"].concat();
        let (concat, text) = split(&payload).unwrap();
        assert_eq!(
            concat,
            Some(Concat {
                reference: 0x42,
                total: 3,
                seq: 1
            })
        );
        assert_eq!(text, b"abc");
    }

    #[test]
    fn sixteen_bit_references_and_other_elements_are_read() {
        // A port-addressing element (05) before a 16-bit concatenation element.
        let payload = [10, 0x05, 0x04, 0, 0, 0, 0, 0x08, 0x04, 0x12, 0x34, b'x'];
        assert_eq!(split(&payload), None, "element overruns the header");
        let payload = [
            12, 0x05, 0x04, 0, 0, 0, 0, 0x08, 0x04, 0x12, 0x34, 2, 2, b'x',
        ];
        let (concat, text) = split(&payload).unwrap();
        assert_eq!(concat.unwrap().reference, 0x1234);
        assert_eq!(text, b"x");
        assert_eq!(split(&[7, 0, 3]), None, "header longer than the payload");
        assert_eq!(
            split(&[5, 0, 3, 1, 2, 3]).unwrap().0,
            None,
            "seq beyond total"
        );
    }
}
